/** MCP App: the review of a proposed value (kv_put, best called with dry_run=true). */
import { mountReview } from "../views/review";
import { startApp } from "./shell";

startApp({ title: "Review", waitFor: "result", mount: (root, ctx, call) => mountReview(root, ctx, call) });
