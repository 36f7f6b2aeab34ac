/** MCP App: the live services table (service_list). */
import { servicesView } from "../views/services";
import { startApp } from "./shell";

startApp({ title: "Services", waitFor: "nothing", mount: (root, ctx) => servicesView.mount(root, ctx) });
