/** Entry point: read the config, start the tracker, attach it to the player, fill the side panel. */

import "./styles.css";

import { loadConfig } from "./config";
import { Player } from "./player";
import { type LogEntry, type NetworkStatus, Tracking } from "./tracking";

const MAX_LOG = 60;

function byId(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

function addLog(entry: LogEntry, count: number): void {
  const li = document.createElement("li");
  li.className = entry.ok ? "ok" : "failed";
  li.dataset.event = entry.event;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  const name = document.createElement("b");
  name.textContent = entry.event;
  const detail = document.createElement("span");
  detail.textContent = entry.detail;
  li.append(time, name, detail);
  const log = byId("event-log");
  log.prepend(li);
  while (log.childElementCount > MAX_LOG) log.lastElementChild?.remove();
  byId("event-count").textContent = String(count);
  byId("event-log-empty").hidden = true;
}

function showNetwork(status: NetworkStatus, collector: string): void {
  const box = byId("collector-status");
  box.dataset.ok = String(status.ok);
  byId("collector-status-text").textContent = status.ok
    ? `collector OK · ${status.sent} event${status.sent === 1 ? "" : "s"} sent`
    : `collector unreachable (${status.detail}) · retrying ${collector}`;
}

function main(): void {
  const config = loadConfig();
  const player = new Player();
  let accepted = 0;
  const tracking = new Tracking(
    config,
    () => player.snapshot(),
    (entry) => {
      if (entry.ok) accepted += 1;
      addLog(entry, accepted);
    },
    (status) => showNetwork(status, config.collectorUrl),
  );
  byId("cfg-collector").textContent = config.collectorUrl;
  byId("cfg-app-id").textContent = config.appId;
  byId("cfg-ping").textContent = `every ${config.pingIntervalS} s while playing`;
  const live = byId("live-link") as HTMLAnchorElement;
  if (config.liveUrl) {
    live.href = config.liveUrl;
    live.hidden = false;
  }
  tracking.trackPage();
  const duid = tracking.domainUserId();
  byId("viewer-id").textContent = duid || "(tracker not started)";
  document.body.dataset.duid = duid;
  byId("copy-viewer-id").addEventListener("click", () => {
    void navigator.clipboard?.writeText(duid).then(() => {
      byId("copy-viewer-id").textContent = "Copied";
    });
  });
  player.attach(tracking);
  document.body.dataset.trackerReady = "true";
}

main();
