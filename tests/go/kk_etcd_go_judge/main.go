// kk_etcd_go_judge decodes registry values exactly as kk_etcd_go v1.4.3 does, as an outside judge of
// what kk-etcd-mcp writes: registrations with strict protojson into PBServiceRegistration, the alive
// document with encoding/json into map[string][]*PBServiceRegistration of the generated types' shape.
//
// The message is defined here from kk_etcd_go's documents (tests/interop/kk_etcd_go), not taken from
// its source: enum PBServiceType {Unknown = 0; Http = 1; Grpc = 2}; message PBServiceRegistration
// {ServiceType, ServiceName, ServiceAddr, CheckConfig {Type, Timeout, Interval, Addr}}, durations as
// google.protobuf.Duration.
//
//	kk_etcd_go_judge etcd <endpoint> <registry root>   read every registration and the alive document
//	kk_etcd_go_judge registration|alive <file>         decode one value
//
// It prints one JSON object; "error" holds what kk_etcd_go's decoder would have failed with.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/clientv3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The alive document's element, shaped as protoc-gen-go generates PBServiceRegistration: enums are
// int32, durations *durationpb.Duration, every field omitempty.
type PBServiceType int32

type PBCheckConfig struct {
	Type     PBServiceType        `json:"Type,omitempty"`
	Timeout  *durationpb.Duration `json:"Timeout,omitempty"`
	Interval *durationpb.Duration `json:"Interval,omitempty"`
	Addr     string               `json:"Addr,omitempty"`
}

type PBServiceRegistration struct {
	ServiceType PBServiceType  `json:"ServiceType,omitempty"`
	ServiceName string         `json:"ServiceName,omitempty"`
	ServiceAddr string         `json:"ServiceAddr,omitempty"`
	CheckConfig *PBCheckConfig `json:"CheckConfig,omitempty"`
}

func field(name string, number int32, kind descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
	f := &descriptorpb.FieldDescriptorProto{
		Name:     proto.String(name),
		JsonName: proto.String(name),
		Number:   proto.Int32(number),
		Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		Type:     kind.Enum(),
	}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

func registrationDescriptor() protoreflect.MessageDescriptor {
	enum := descriptorpb.FieldDescriptorProto_TYPE_ENUM
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("judge/pb_service_registration.proto"),
		Package:    proto.String("judge"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/duration.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("PBServiceType"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("Unknown"), Number: proto.Int32(0)},
				{Name: proto.String("Http"), Number: proto.Int32(1)},
				{Name: proto.String("Grpc"), Number: proto.Int32(2)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("PBServiceRegistration"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("ServiceType", 1, enum, ".judge.PBServiceType"),
				field("ServiceName", 2, str, ""),
				field("ServiceAddr", 3, str, ""),
				field("CheckConfig", 4, msg, ".judge.PBServiceRegistration.PBCheckConfig"),
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name: proto.String("PBCheckConfig"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("Type", 1, enum, ".judge.PBServiceType"),
					field("Timeout", 2, msg, ".google.protobuf.Duration"),
					field("Interval", 3, msg, ".google.protobuf.Duration"),
					field("Addr", 4, str, ""),
				},
			}},
		}},
	}
	_ = durationpb.New(0) // links duration.proto into protoregistry.GlobalFiles
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	return fd.Messages().ByName("PBServiceRegistration")
}

var registration = registrationDescriptor()

// decodeRegistration is kk_etcd_go's PBServiceRegistration.UnMarshal (protojson.Unmarshal, strict),
// then its Check() rules; the decoded message comes back as protojson.
func decodeRegistration(value []byte) map[string]interface{} {
	message := dynamicpb.NewMessage(registration)
	if err := protojson.Unmarshal(value, message); err != nil {
		return map[string]interface{}{"error": err.Error()}
	}
	out, err := protojson.Marshal(message)
	if err != nil {
		return map[string]interface{}{"error": err.Error()}
	}
	result := map[string]interface{}{"decoded": json.RawMessage(out)}
	if problem := check(message); problem != "" {
		result["check_error"] = problem
	}
	return result
}

// check is kk_etcd_go's PBServiceRegistration.Check: what its SDK refuses to register.
func check(message *dynamicpb.Message) string {
	fields := registration.Fields()
	if message.Get(fields.ByName("ServiceName")).String() == "" || message.Get(fields.ByName("ServiceAddr")).String() == "" {
		return "server name and address cannot be empty"
	}
	config := message.Get(fields.ByName("CheckConfig")).Message()
	configFields := config.Descriptor().Fields()
	kind := config.Get(configFields.ByName("Type")).Enum()
	if kind != 1 && kind != 2 {
		return "check type must be Grpc or Http"
	}
	seconds := func(name protoreflect.Name) time.Duration {
		d := config.Get(configFields.ByName(name)).Message()
		if !d.IsValid() {
			return 0
		}
		ds := d.Descriptor().Fields()
		return time.Duration(d.Get(ds.ByName("seconds")).Int())*time.Second + time.Duration(d.Get(ds.ByName("nanos")).Int())
	}
	if seconds("Timeout") < time.Second {
		return "check timeout must grater than 1 second"
	}
	if seconds("Interval") < seconds("Timeout") {
		return "check interval must grater than Timeout"
	}
	if config.Get(configFields.ByName("Addr")).String() == "" {
		return "check addr cannot be empty"
	}
	return ""
}

// decodeAlive is kk_etcd_go's read of the alive document (encoding/json, UseNumber), stricter in one
// way: an unknown field is an error too, so anything but kk_etcd_go's fields is caught. The decoded map
// comes back re-encoded by encoding/json, to be compared byte for byte with what was stored.
func decodeAlive(value []byte) map[string]interface{} {
	hub := map[string][]*PBServiceRegistration{}
	decoder := json.NewDecoder(bytes.NewReader(value))
	decoder.UseNumber()
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&hub); err != nil {
		return map[string]interface{}{"error": err.Error()}
	}
	for group, entries := range hub {
		for _, entry := range entries {
			if entry.ServiceType != 1 && entry.ServiceType != 2 {
				return map[string]interface{}{"error": fmt.Sprintf("%s: type %d is neither Http nor Grpc", group, entry.ServiceType)}
			}
		}
	}
	again, err := json.Marshal(hub)
	if err != nil {
		return map[string]interface{}{"error": err.Error()}
	}
	return map[string]interface{}{"reencoded": string(again)}
}

func fromEtcd(endpoint, root string) map[string]interface{} {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fail(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// What kk_etcd_go's hub lists at start: every key under <root>registration/.
	listed, err := client.Get(ctx, root+"registration/", clientv3.WithPrefix())
	if err != nil {
		fail(err)
	}
	registrations := map[string]interface{}{}
	for _, kv := range listed.Kvs {
		registrations[string(kv.Key)] = decodeRegistration(kv.Value)
	}
	report := map[string]interface{}{"registrations": registrations}
	alive, err := client.Get(ctx, root+"alive/")
	if err != nil {
		fail(err)
	}
	if len(alive.Kvs) == 1 {
		report["alive"] = decodeAlive(alive.Kvs[0].Value)
	}
	return report
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kk_etcd_go_judge:", err)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		fail(fmt.Errorf("usage: kk_etcd_go_judge etcd <endpoint> <root> | registration <file> | alive <file>"))
	}
	var report map[string]interface{}
	switch os.Args[1] {
	case "etcd":
		report = fromEtcd(os.Args[2], os.Args[3])
	case "registration", "alive":
		value, err := ioutil.ReadFile(os.Args[2])
		if err != nil {
			fail(err)
		}
		if os.Args[1] == "registration" {
			report = decodeRegistration(value)
		} else {
			report = decodeAlive(value)
		}
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
	out, err := json.Marshal(report)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}
