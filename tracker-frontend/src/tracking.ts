/**
 * The real Snowplow browser tracker and media plugin, behind a small façade the player calls.
 * Every media call attaches the current player state (a snapshot taken by the player), so the
 * media_player entity always says where the content is, whether it is paused, its volume, etc.
 */

import {
  type BrowserTracker,
  enableActivityTracking,
  newTracker,
  trackPageView,
} from "@snowplow/browser-tracker";
import {
  endMediaTracking,
  MediaPlayerAdBreakType,
  SnowplowMediaPlugin,
  startMediaTracking,
  trackMediaAdBreakEnd,
  trackMediaAdBreakStart,
  trackMediaAdClick,
  trackMediaAdComplete,
  trackMediaAdFirstQuartile,
  trackMediaAdMidpoint,
  trackMediaAdPause,
  trackMediaAdResume,
  trackMediaAdSkip,
  trackMediaAdStart,
  trackMediaAdThirdQuartile,
  trackMediaBufferEnd,
  trackMediaBufferStart,
  trackMediaEnd,
  trackMediaError,
  trackMediaFullscreenChange,
  trackMediaPause,
  trackMediaPictureInPictureChange,
  trackMediaPlay,
  trackMediaPlaybackRateChange,
  trackMediaQualityChange,
  trackMediaReady,
  trackMediaSeekEnd,
  trackMediaSeekStart,
  trackMediaVolumeChange,
  updateMediaTracking,
} from "@snowplow/browser-plugin-media";

import type { Ad, AdBreak } from "./catalog";
import type { PageConfig } from "./config";

/** The media_player entity fields the plugin accepts. */
export type PlayerState = NonNullable<Parameters<typeof trackMediaPlay>[0]["player"]>;

export const PERCENT_BOUNDARIES = [10, 25, 50, 75, 90];
const TRACKER_NAMESPACE = "lvp";

/** One event as the collector acknowledged it (or failed to). */
export interface LogEntry {
  event: string;
  detail: string;
  ok: boolean;
}

export interface NetworkStatus {
  ok: boolean;
  sent: number;
  failed: number;
  detail: string;
}

function randomId(): string {
  if (typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function adEntity(ad: Ad, podPosition: number): { adId: string; name: string; creativeId: string; duration: number; skippable: boolean; podPosition: number } {
  return { adId: ad.adId, name: ad.name, creativeId: ad.creativeId, duration: ad.duration, skippable: true, podPosition };
}

function adBreakEntity(brk: AdBreak, startTime: number): { breakId: string; name: string; breakType: MediaPlayerAdBreakType; podSize: number; startTime: number } {
  return {
    breakId: brk.breakId,
    name: brk.name,
    breakType: MediaPlayerAdBreakType.Linear,
    podSize: brk.ads.length,
    startTime,
  };
}

function parse(v: unknown): unknown {
  if (typeof v !== "string") return undefined;
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}

type Sdj = { schema?: string; data?: Record<string, unknown> };

/** A short name and detail for a sent payload: "pause" / "at 3.2 s", "page_view" / "". */
export function describe(payload: Record<string, unknown>): { event: string; detail: string } {
  const e = payload.e;
  if (e === "pv") return { event: "page_view", detail: String(payload.page ?? "") };
  if (e === "pp") return { event: "page_ping", detail: "" };
  if (e !== "ue") return { event: String(e), detail: "" };
  const ue = parse(payload.ue_pr) as { data?: Sdj } | undefined;
  const schema = ue?.data?.schema ?? "";
  const event = (schema.split("/")[1] ?? "unknown").replace(/_event$/, "");
  const data = ue?.data?.data ?? {};
  const contexts = ((parse(payload.co) as { data?: Sdj[] } | undefined)?.data ?? []) as Sdj[];
  const ctx = (name: string): Record<string, unknown> | undefined =>
    contexts.find((c) => (c.schema ?? "").includes(`/${name}/jsonschema/`))?.data;
  const parts: string[] = [];
  const ad = ctx("ad");
  if (ad && typeof ad.name === "string") parts.push(ad.name);
  if (typeof data.percentProgress === "number") parts.push(`${data.percentProgress} %`);
  if (data.newQuality !== undefined) parts.push(`${String(data.previousQuality)} → ${String(data.newQuality)}`);
  if (data.newRate !== undefined) parts.push(`${String(data.newRate)}×`);
  const player = ctx("media_player");
  if (data.newVolume !== undefined) parts.push(player?.muted ? "muted" : `volume ${String(data.newVolume)}`);
  if (player && typeof player.currentTime === "number" && !ad) parts.push(`${player.currentTime.toFixed(1)} s`);
  return { event, detail: parts.join(" · ") };
}

export class Tracking {
  readonly tracker: BrowserTracker | null;
  private mediaId = "";
  private readonly network: NetworkStatus = { ok: true, sent: 0, failed: 0, detail: "" };

  constructor(
    private readonly config: PageConfig,
    private readonly snapshot: () => PlayerState,
    private readonly onLog: (entry: LogEntry) => void,
    private readonly onNetwork: (status: NetworkStatus) => void,
  ) {
    const secure = window.location.protocol === "https:";
    this.tracker =
      newTracker(TRACKER_NAMESPACE, config.collectorUrl, {
        appId: config.appId,
        platform: "web",
        eventMethod: "post",
        bufferSize: 1,
        cookieSameSite: secure ? "None" : "Lax",
        cookieSecure: secure,
        stateStorageStrategy: "cookieAndLocalStorage",
        contexts: { webPage: true },
        plugins: [SnowplowMediaPlugin()],
        onRequestSuccess: (batch) => {
          this.network.ok = true;
          this.network.sent += batch.length;
          this.network.detail = "";
          batch.forEach((p) => this.onLog({ ...describe(p), ok: true }));
          this.onNetwork({ ...this.network });
        },
        onRequestFailure: (failure) => {
          this.network.ok = false;
          this.network.failed += failure.events.length;
          this.network.detail = failure.message || `HTTP ${failure.status ?? "?"}`;
          failure.events.forEach((p) => this.onLog({ ...describe(p), ok: false }));
          this.onNetwork({ ...this.network });
        },
      }) ?? null;
  }

  /** The tracker's domain user id (duid), the raw id the collector pseudonymizes. */
  domainUserId(): string {
    return this.tracker?.getDomainUserId() ?? "";
  }

  get mediaSessionId(): string {
    return this.mediaId;
  }

  trackPage(): void {
    enableActivityTracking({ minimumVisitLength: 30, heartbeatDelay: 30 });
    trackPageView();
  }

  /** Starts a media session (a new id each time the programme is (re)started). */
  startSession(): string {
    if (this.mediaId) {
      endMediaTracking({ id: this.mediaId });
    }
    this.mediaId = randomId();
    startMediaTracking({
      id: this.mediaId,
      player: this.snapshot(),
      session: { startedAt: new Date() },
      pings: { pingInterval: this.config.pingIntervalS, maxPausedPings: 1 },
      boundaries: PERCENT_BOUNDARIES,
      filterOutRepeatedEvents: { seekEvents: true, volumeChangeEvents: true, flushTimeoutMs: 1500 },
    });
    return this.mediaId;
  }

  /** Flushes filtered (seek/volume) events and stops pings, e.g. when the page goes away. */
  endSession(): void {
    if (this.mediaId) {
      endMediaTracking({ id: this.mediaId });
      this.mediaId = "";
    }
  }

  private args(player?: PlayerState): { id: string; player: PlayerState } {
    return { id: this.mediaId, player: { ...this.snapshot(), ...player } };
  }

  /** Keeps the stored player state current (pings, percent progress boundaries). */
  update(): void {
    if (this.mediaId) updateMediaTracking(this.args());
  }

  ready(): void {
    trackMediaReady(this.args());
  }
  play(): void {
    trackMediaPlay(this.args());
  }
  pause(): void {
    trackMediaPause(this.args());
  }
  end(): void {
    trackMediaEnd(this.args());
  }
  seekStart(from: number): void {
    trackMediaSeekStart(this.args({ currentTime: from }));
  }
  seekEnd(): void {
    trackMediaSeekEnd(this.args());
  }
  volume(newVolume: number, muted: boolean): void {
    trackMediaVolumeChange({ ...this.args({ muted }), newVolume });
  }
  rate(newRate: number): void {
    trackMediaPlaybackRateChange({ ...this.args(), newRate });
  }
  fullscreen(fullscreen: boolean): void {
    trackMediaFullscreenChange({ ...this.args(), fullscreen });
  }
  pictureInPicture(pictureInPicture: boolean): void {
    trackMediaPictureInPictureChange({ ...this.args(), pictureInPicture });
  }
  bufferStart(): void {
    trackMediaBufferStart(this.args());
  }
  bufferEnd(): void {
    trackMediaBufferEnd(this.args());
  }
  quality(previousQuality: string, newQuality: string, bitrate: number): void {
    trackMediaQualityChange({ ...this.args(), previousQuality, newQuality, bitrate, automatic: false });
  }
  error(errorCode: string, errorName: string, errorDescription: string): void {
    trackMediaError({ ...this.args(), errorCode, errorName, errorDescription });
  }

  // --- ads -------------------------------------------------------------------------------------
  adBreakStart(brk: AdBreak): void {
    trackMediaAdBreakStart({ ...this.args(), adBreak: adBreakEntity(brk, this.snapshot().currentTime ?? 0) });
  }
  adBreakEnd(): void {
    trackMediaAdBreakEnd(this.args());
  }
  adStart(ad: Ad, podPosition: number): void {
    trackMediaAdStart({ ...this.args(), ad: adEntity(ad, podPosition) });
  }
  adQuartile(quartile: 1 | 2 | 3): void {
    const fn = [trackMediaAdFirstQuartile, trackMediaAdMidpoint, trackMediaAdThirdQuartile][quartile - 1];
    fn(this.args());
  }
  adComplete(): void {
    trackMediaAdComplete(this.args());
  }
  adSkip(percentProgress: number): void {
    trackMediaAdSkip({ ...this.args(), percentProgress });
  }
  adClick(percentProgress: number): void {
    trackMediaAdClick({ ...this.args(), percentProgress });
  }
  adPause(percentProgress: number): void {
    trackMediaAdPause({ ...this.args({ paused: true }), percentProgress });
  }
  adResume(percentProgress: number): void {
    trackMediaAdResume({ ...this.args({ paused: false }), percentProgress });
  }

}
