// grpc_resolver_client is a Go gRPC client as a Go service would write one: etcd's own resolver over
// the hub's endpoint keys, gRPC's round_robin balancer. It calls /kk.test.Whoami/Name (the test
// servers answer with their address) about 20 times a second and prints "answer <addr>" or
// "error <message>" per call, until its standard input closes.
//
//	grpc_resolver_client <etcd endpoint> <target, e.g. kk_service/endpoints/api/>
//
// Built in GOPATH mode against Debian's etcd 3.4 client (go.etcd.io/etcd/clientv3); etcd 3.5+ has the
// same resolver at go.etcd.io/etcd/client/v3/naming/resolver.
package main

import (
	"context"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/resolver"
	"google.golang.org/grpc"
)

// rawCodec sends and receives the bytes as they are: the Whoami method needs no generated stubs.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: grpc_resolver_client <etcd endpoint> <target>")
		os.Exit(2)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	builder, err := resolver.NewBuilder(client)
	if err != nil {
		panic(err)
	}
	conn, err := grpc.Dial("etcd:///"+os.Args[2],
		grpc.WithResolvers(builder),
		grpc.WithDefaultServiceConfig(`{"loadBalancingPolicy":"round_robin"}`),
		grpc.WithInsecure())
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	stop := make(chan struct{})
	go func() { // the test ends the client by closing its standard input
		_, _ = io.Copy(ioutil.Discard, os.Stdin)
		close(stop)
	}()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		request, reply := []byte{}, []byte{}
		err := conn.Invoke(ctx, "/kk.test.Whoami/Name", &request, &reply, grpc.ForceCodec(rawCodec{}))
		cancel()
		if err != nil {
			fmt.Printf("error %s\n", err)
		} else {
			fmt.Printf("answer %s\n", reply)
		}
	}
}
