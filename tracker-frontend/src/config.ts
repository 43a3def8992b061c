/**
 * Page configuration: `window.LVP_CONFIG` (set by `/config.js`, which `lvp/local/tracker_site.py`
 * generates) overridden by query parameters, so one build works against any collector.
 *
 *   ?collector=http://host:9090   collector URL (":9090" = same host as the page, that port)
 *   ?app_id=my-app                tracker app id
 *   ?ping=5                       media ping interval in seconds
 *   ?live=http://host:8080/       link to the live viewer page ("" hides it)
 */

export interface PageConfig {
  collectorUrl: string;
  appId: string;
  pingIntervalS: number;
  liveUrl: string;
}

interface RawConfig {
  collectorUrl?: unknown;
  appId?: unknown;
  pingIntervalS?: unknown;
  liveUrl?: unknown;
}

declare global {
  interface Window {
    LVP_CONFIG?: RawConfig;
  }
}

export const DEFAULTS: PageConfig = {
  collectorUrl: ":9090",
  appId: "lvp-demo",
  pingIntervalS: 10,
  liveUrl: "",
};

/** ":9090" -> "<page protocol>//<page host>:9090"; full http(s) URLs pass through. */
export function resolveCollectorUrl(raw: string, here: Location): string {
  const value = raw.trim();
  if (/^:\d{1,5}$/.test(value)) {
    return `${here.protocol}//${here.hostname}${value}`;
  }
  return value.replace(/\/+$/, "");
}

function str(v: unknown, fallback: string): string {
  return typeof v === "string" ? v : fallback;
}

function positive(v: unknown, fallback: number): number {
  const n = typeof v === "number" ? v : typeof v === "string" ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

export function loadConfig(win: Window = window): PageConfig {
  const raw: RawConfig = win.LVP_CONFIG ?? {};
  const query = new URLSearchParams(win.location.search);
  const pick = (name: string, value: unknown): unknown => (query.has(name) ? query.get(name) : value);
  const collector = str(pick("collector", raw.collectorUrl), DEFAULTS.collectorUrl) || DEFAULTS.collectorUrl;
  return {
    collectorUrl: resolveCollectorUrl(collector, win.location),
    appId: str(pick("app_id", raw.appId), DEFAULTS.appId) || DEFAULTS.appId,
    pingIntervalS: positive(pick("ping", raw.pingIntervalS), DEFAULTS.pingIntervalS),
    liveUrl: str(pick("live", raw.liveUrl), DEFAULTS.liveUrl),
  };
}
