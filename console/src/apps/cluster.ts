/** MCP App: the cluster (cluster_status). */
import { clusterView } from "../views/cluster";
import { startApp } from "./shell";

startApp({ title: "Cluster", waitFor: "nothing", mount: (root, ctx) => clusterView.mount(root, ctx) });
