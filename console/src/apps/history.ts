/** MCP App: a key's versions with diffs and Rollback (kv_history). */
import { fill, h } from "../dom";
import { noticeArea } from "../view";
import { showHistory } from "../views/history";
import { startApp } from "./shell";

startApp({
  title: "History",
  waitFor: "input",
  mount(root, ctx, call) {
    const key = String(call.arguments.key ?? "");
    const messages = noticeArea();
    const section = h("section", { class: "section", "aria-labelledby": "history-heading" });
    fill(root, h("h1", null, "History: ", h("span", { class: "mono" }, key)), messages.element, section);
    const load = (): Promise<void> => showHistory(section, ctx, key, messages, load);
    void load();
    return () => undefined;
  },
});
