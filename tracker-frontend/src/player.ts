/**
 * The player: an HTML5 <video> for the programme, a second one for ads, custom controls, and the
 * wiring of every relevant DOM event to the media plugin (through {@link Tracking}).
 *
 * Modes: idle (before the first play) -> ad (an ad break) / content -> ended. While an ad break
 * plays the content video is paused programmatically; those pauses are not user pauses and are
 * not tracked. Mid-roll: once the content position reaches the break (by playing or by a seek
 * followed by play), the break plays, then the content resumes where it was.
 */

import { AD_BREAKS, type Ad, type AdBreak, RENDITIONS, SKIP_AFTER_S, TITLE } from "./catalog";
import type { PlayerState, Tracking } from "./tracking";

export type Mode = "idle" | "content" | "ad" | "ended";

const ERROR_NAMES: Record<number, string> = {
  1: "MEDIA_ERR_ABORTED",
  2: "MEDIA_ERR_NETWORK",
  3: "MEDIA_ERR_DECODE",
  4: "MEDIA_ERR_SRC_NOT_SUPPORTED",
};

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

export function formatTime(s: number): string {
  if (!Number.isFinite(s) || s < 0) s = 0;
  const whole = Math.floor(s);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

interface AdPlayback {
  brk: AdBreak;
  index: number; // position in the pod, 0-based
  quartiles: number; // quartiles already tracked (0-3)
  userPaused: boolean; // paused by the user (or by a click-through): next play is a resume
}

export class Player {
  readonly root = $("player");
  readonly content = $("content-video") as HTMLVideoElement;
  readonly adVideo = $("ad-video") as HTMLVideoElement;
  private tracking!: Tracking;

  private mode: Mode = "idle";
  private rendition = RENDITIONS[0];
  private readyTracked = false;
  private switching = false; // a quality switch is reloading the content video
  private buffering = false;
  private seeking = false;
  private rewinding = false;
  private lastTime = 0; // content position before the current seek
  private knownDuration = 0;
  private trackedVolume = 80; // the start volume (set below), so setting it is not a change
  private trackedMuted = false;
  private trackedRate = 1;
  private played = new Set<string>(); // ad breaks already played in this media session
  private ad: AdPlayback | null = null;
  private adSeeking = false;

  constructor() {
    this.content.src = this.rendition.src;
    this.content.volume = this.adVideo.volume = 0.8;
    this.buildQualityMenu();
    this.wireControls();
    this.wireContent();
    this.wireAd();
    this.render();
    requestAnimationFrame(this.frame);
  }

  /** Connects the tracker; the media session starts now and `ready` follows on loadedmetadata. */
  attach(tracking: Tracking): void {
    this.tracking = tracking;
    this.newSession();
    if (this.content.readyState >= HTMLMediaElement.HAVE_METADATA) this.onMetadata();
  }

  // --- state for the media_player entity ------------------------------------------------------

  snapshot(): PlayerState {
    const c = this.content;
    const duration = Number.isFinite(c.duration) && c.duration > 0 ? c.duration : this.knownDuration;
    const paused =
      this.mode === "ad" ? (this.ad?.userPaused ?? false) : this.mode === "content" ? c.paused && !this.switching : true;
    return {
      currentTime: this.switching || this.seeking ? this.lastTime : c.currentTime,
      duration: duration > 0 ? duration : null,
      paused,
      ended: this.mode === "ended",
      muted: c.muted,
      volume: Math.round(c.volume * 100),
      playbackRate: c.playbackRate,
      quality: this.rendition.quality,
      fullscreen: document.fullscreenElement !== null,
      pictureInPicture: document.pictureInPictureElement === c,
      label: TITLE,
      playerType: "org.whatwg-media_element",
      mediaType: "video" as PlayerState["mediaType"],
      livestream: false,
      loop: false,
    };
  }

  private newSession(): void {
    const id = this.tracking.startSession();
    this.played.clear();
    this.readyTracked = false;
    $("media-session-id").textContent = id;
  }

  private setMode(mode: Mode): void {
    this.mode = mode;
    this.render();
  }

  // --- user intents ---------------------------------------------------------------------------

  /** Play/pause as the user means it: start, pause, resume, or replay. */
  toggle(): void {
    switch (this.mode) {
      case "idle":
        this.begin();
        break;
      case "ad":
        if (this.adVideo.paused) this.resumeAd();
        else this.adVideo.pause();
        break;
      case "content":
        if (this.content.paused) this.resumeContent();
        else this.content.pause();
        break;
      case "ended":
        this.replay();
        break;
    }
  }

  private begin(): void {
    const pre = this.dueBreak(0);
    if (pre) this.startBreak(pre);
    else this.startContent();
  }

  private resumeContent(): void {
    const due = this.dueBreak(this.content.currentTime);
    if (due) this.startBreak(due);
    else this.startContent();
  }

  private startContent(): void {
    this.setMode("content");
    this.content.play().catch((e: unknown) => this.playRejected(e));
  }

  private replay(): void {
    this.newSession();
    this.setMode("idle");
    this.lastTime = 0;
    this.rewinding = true; // rewinding for a replay is not a user seek
    this.content.currentTime = 0;
    this.onMetadata();
    this.begin();
  }

  seekTo(seconds: number): void {
    if (this.mode === "ad" || this.mode === "idle") return;
    const d = this.snapshot().duration ?? 0;
    const target = Math.max(0, Math.min(seconds, Math.max(0, d - 0.05)));
    if (this.mode === "ended") this.setMode("content");
    this.content.currentTime = target;
  }

  private playRejected(e: unknown): void {
    if (e instanceof DOMException && e.name === "AbortError") return; // src changed meanwhile
    console.warn("playback did not start:", e);
    this.render();
  }

  // --- ad breaks ------------------------------------------------------------------------------

  /** The first unplayed break at or before `position` (fraction 0 only before the start). */
  private dueBreak(position: number): AdBreak | undefined {
    const d = this.snapshot().duration ?? 0;
    return AD_BREAKS.find(
      (b) => !this.played.has(b.breakId) && (b.at === 0 ? position < 0.5 : d > 0 && position >= b.at * d),
    );
  }

  private startBreak(brk: AdBreak): void {
    this.played.add(brk.breakId);
    this.ad = { brk, index: 0, quartiles: 0, userPaused: false };
    this.setMode("ad"); // before pausing: the content pause below is not a user pause
    if (!this.content.paused) this.content.pause();
    this.tracking.adBreakStart(brk);
    this.playAd();
  }

  private currentAd(): Ad | undefined {
    return this.ad ? this.ad.brk.ads[this.ad.index] : undefined;
  }

  private playAd(): void {
    const ad = this.currentAd();
    if (!this.ad || !ad) return;
    this.ad.quartiles = 0;
    this.ad.userPaused = false;
    this.adSeeking = false;
    this.adVideo.src = ad.src;
    this.adVideo.playbackRate = 1;
    this.adVideo.muted = this.content.muted;
    this.adVideo.volume = this.content.volume;
    this.tracking.adStart(ad, this.ad.index + 1);
    this.render();
    this.adVideo.play().catch((e: unknown) => {
      if (e instanceof DOMException && e.name === "AbortError") return;
      // autoplay refused: show the ad paused; the next click on play resumes it
      if (this.ad) this.ad.userPaused = true;
      this.render();
    });
  }

  private adPercent(): number {
    const d = this.adVideo.duration;
    const fallback = this.currentAd()?.duration ?? 0;
    const dur = Number.isFinite(d) && d > 0 ? d : fallback;
    return dur > 0 ? Math.min(100, (this.adVideo.currentTime / dur) * 100) : 0;
  }

  private resumeAd(): void {
    this.adVideo.play().catch((e: unknown) => this.playRejected(e));
  }

  private skipAd(): void {
    if (this.mode !== "ad" || this.adVideo.currentTime < SKIP_AFTER_S) return;
    const pct = this.adPercent();
    this.adVideo.pause();
    this.tracking.adSkip(pct);
    this.nextAd();
  }

  private clickAd(): void {
    if (this.mode !== "ad" || !this.ad) return;
    const ad = this.currentAd();
    this.tracking.adClick(this.adPercent());
    if (!this.adVideo.paused) this.adVideo.pause(); // -> ad_pause
    $("click-through-title").textContent = ad ? `${ad.name} — ${ad.advertiser}` : "Advertiser";
    ($("click-through") as HTMLElement).hidden = false;
    $("close-click-through").focus();
  }

  private closeClickThrough(): void {
    $("click-through").hidden = true;
    if (this.mode === "ad" && this.adVideo.paused) this.resumeAd(); // -> ad_resume
  }

  private nextAd(): void {
    if (!this.ad) return;
    this.ad.index += 1;
    if (this.ad.index < this.ad.brk.ads.length) this.playAd();
    else this.endBreak();
  }

  private endBreak(): void {
    const brk = this.ad?.brk;
    this.ad = null;
    this.adVideo.removeAttribute("src");
    this.adVideo.load();
    $("click-through").hidden = true;
    if (brk) this.tracking.adBreakEnd();
    this.startContent(); // -> play
  }

  // --- DOM wiring -----------------------------------------------------------------------------

  private onMetadata(): void {
    if (Number.isFinite(this.content.duration)) this.knownDuration = this.content.duration;
    if (!this.readyTracked && this.tracking) {
      this.readyTracked = true;
      this.tracking.ready();
      this.root.dataset.ready = "true";
    }
    this.render();
  }

  private wireContent(): void {
    const c = this.content;
    const on = (type: string, fn: () => void): void => c.addEventListener(type, fn);
    on("loadedmetadata", () => this.onMetadata());
    on("canplay", () => this.onMetadata());
    on("play", () => {
      if (this.mode === "content" && !this.switching) this.tracking.play();
      this.render();
    });
    on("pause", () => {
      if (this.mode === "content" && !this.switching && !c.ended) this.tracking.pause();
      this.render();
    });
    on("seeking", () => {
      if (this.switching || this.seeking || this.rewinding) return;
      this.seeking = true;
      if (this.mode === "content" || this.mode === "ended") this.tracking.seekStart(this.lastTime);
    });
    on("seeked", () => {
      if (this.rewinding) {
        this.rewinding = false;
        return;
      }
      if (this.switching) return;
      const was = this.seeking;
      this.seeking = false;
      this.lastTime = c.currentTime;
      if (was && (this.mode === "content" || this.mode === "ended")) this.tracking.seekEnd();
      this.render();
    });
    on("timeupdate", () => {
      if (this.switching || this.seeking || c.seeking) return;
      this.lastTime = c.currentTime;
      if (this.mode !== "content") return;
      this.tracking.update(); // pings carry the position; percent progress boundaries fire here
      if (!c.paused) {
        const due = this.dueBreak(c.currentTime);
        if (due && due.at > 0) this.startBreak(due);
      }
    });
    on("volumechange", () => {
      this.adVideo.muted = c.muted;
      this.adVideo.volume = c.volume;
      const volume = Math.round(c.volume * 100);
      if (volume !== this.trackedVolume || c.muted !== this.trackedMuted) {
        this.trackedVolume = volume;
        this.trackedMuted = c.muted;
        this.tracking.volume(volume, c.muted);
      }
      this.render();
    });
    on("ratechange", () => {
      // also fired for defaultPlaybackRate and by reloads: only a new playbackRate is a change
      if (!this.switching && c.playbackRate !== this.trackedRate) {
        this.trackedRate = c.playbackRate;
        this.tracking.rate(c.playbackRate);
      }
      this.render();
    });
    on("waiting", () => this.bufferStart());
    on("playing", () => this.bufferEnd());
    on("ended", () => {
      if (this.mode !== "content") return;
      this.lastTime = c.currentTime;
      this.setMode("ended");
      this.tracking.end();
    });
    on("error", () => this.mediaError(c, false));
    on("enterpictureinpicture", () => this.tracking.pictureInPicture(true));
    on("leavepictureinpicture", () => this.tracking.pictureInPicture(false));
    document.addEventListener("fullscreenchange", () => {
      this.tracking.fullscreen(document.fullscreenElement !== null);
      this.render();
    });
    window.addEventListener("pagehide", () => this.tracking.endSession());
  }

  private wireAd(): void {
    const a = this.adVideo;
    const on = (type: string, fn: () => void): void => a.addEventListener(type, fn);
    on("pause", () => {
      // a user pause (or a click-through) during the ad; not the pause at the ad's end or skip
      // (a skip pauses too, but by the time this event runs the next ad plays or the break ended)
      if (this.mode !== "ad" || !this.ad || a.ended || !a.paused || this.ad.userPaused) return;
      this.ad.userPaused = true;
      this.tracking.adPause(this.adPercent());
      this.render();
    });
    on("play", () => {
      if (this.mode !== "ad" || !this.ad) return;
      if (this.ad.userPaused) {
        this.ad.userPaused = false;
        this.tracking.adResume(this.adPercent());
      }
      this.render();
    });
    on("timeupdate", () => {
      if (this.mode !== "ad" || !this.ad || this.adSeeking) return;
      const pct = this.adPercent();
      while (this.ad.quartiles < 3 && pct >= (this.ad.quartiles + 1) * 25) {
        this.ad.quartiles += 1;
        this.tracking.adQuartile(this.ad.quartiles as 1 | 2 | 3);
      }
      this.render();
    });
    // quartiles count continuous playback: those jumped over by a seek are not reported (the
    // timeupdate that ends a seek comes before `seeked`, hence the flag)
    on("seeking", () => {
      this.adSeeking = true;
    });
    on("seeked", () => {
      this.adSeeking = false;
      if (this.mode === "ad" && this.ad) {
        this.ad.quartiles = Math.max(this.ad.quartiles, Math.min(3, Math.floor(this.adPercent() / 25)));
      }
    });
    on("ended", () => {
      if (this.mode !== "ad" || !this.ad) return;
      this.tracking.adComplete();
      this.nextAd();
    });
    on("error", () => this.mediaError(a, true));
  }

  private bufferStart(): void {
    if (this.buffering || this.switching || this.mode !== "content") return;
    this.buffering = true;
    this.tracking.bufferStart();
    this.render();
  }

  private bufferEnd(): void {
    if (!this.buffering) return;
    this.buffering = false;
    this.tracking.bufferEnd();
    this.render();
  }

  private mediaError(video: HTMLVideoElement, isAd: boolean): void {
    const err = video.error;
    if (!err || (isAd && this.mode !== "ad")) return;
    const name = ERROR_NAMES[err.code] ?? "MEDIA_ERR_UNKNOWN";
    const what = isAd ? `ad ${this.currentAd()?.adId ?? ""}` : `content ${this.rendition.quality}`;
    this.tracking.error(String(err.code), name, `${what}: ${err.message || "media error"}`);
    if (isAd) this.nextAd(); // a broken ad must not block the programme
  }

  private switchQuality(quality: string): void {
    const next = RENDITIONS.find((r) => r.quality === quality);
    if (!next || next === this.rendition) return;
    const c = this.content;
    const previous = this.rendition.quality;
    const resume = this.mode === "content" && !c.paused;
    const at = c.currentTime;
    const rate = c.playbackRate;
    this.switching = true;
    this.lastTime = at;
    this.rendition = next;
    c.src = next.src;
    this.tracking.quality(previous, next.quality, next.bitrate);
    c.addEventListener(
      "loadedmetadata",
      () => {
        c.playbackRate = rate;
        c.currentTime = at;
        c.addEventListener(
          "seeked",
          () => {
            const done = (): void => {
              this.switching = false;
              this.render();
            };
            if (resume) c.play().then(done, done);
            else done();
          },
          { once: true },
        );
      },
      { once: true },
    );
    this.render();
  }

  private buildQualityMenu(): void {
    const sel = $("quality") as HTMLSelectElement;
    for (const r of RENDITIONS) {
      const opt = document.createElement("option");
      opt.value = r.quality;
      opt.textContent = r.quality;
      sel.append(opt);
    }
    sel.value = this.rendition.quality;
  }

  private wireControls(): void {
    const click = (id: string, fn: () => void): void => $(id).addEventListener("click", fn);
    click("start", () => this.toggle());
    click("play-pause", () => this.toggle());
    click("surface", () => this.toggle());
    click("replay", () => this.replay());
    click("skip-ad", () => this.skipAd());
    click("ad-click-area", () => this.clickAd());
    click("ad-learn-more", () => this.clickAd());
    click("close-click-through", () => this.closeClickThrough());
    click("mute", () => {
      this.content.muted = !this.content.muted;
      if (!this.content.muted && this.content.volume === 0) this.content.volume = 0.5;
    });
    click("fullscreen", () => {
      if (document.fullscreenElement) void document.exitFullscreen();
      else void this.root.requestFullscreen().catch(() => undefined);
    });
    const pip = $("pip") as HTMLButtonElement;
    pip.hidden = !document.pictureInPictureEnabled;
    pip.addEventListener("click", () => {
      if (document.pictureInPictureElement) void document.exitPictureInPicture();
      else void this.content.requestPictureInPicture().catch(() => undefined);
    });
    const volume = $("volume") as HTMLInputElement;
    volume.addEventListener("input", () => {
      const v = Number(volume.value) / 100;
      this.content.volume = v;
      this.content.muted = v === 0;
    });
    const rate = $("rate") as HTMLSelectElement;
    rate.addEventListener("change", () => {
      const r = Number(rate.value);
      this.content.defaultPlaybackRate = r;
      this.content.playbackRate = r;
    });
    const quality = $("quality") as HTMLSelectElement;
    quality.addEventListener("change", () => this.switchQuality(quality.value));

    const progress = $("progress");
    const seekFromPointer = (ev: MouseEvent): void => {
      const box = progress.getBoundingClientRect();
      const frac = Math.max(0, Math.min(1, (ev.clientX - box.left) / box.width));
      this.seekTo(frac * (this.snapshot().duration ?? 0));
    };
    progress.addEventListener("click", seekFromPointer);
    progress.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight") this.seekTo(this.content.currentTime + 5);
      else if (ev.key === "ArrowLeft") this.seekTo(this.content.currentTime - 5);
      else return;
      ev.preventDefault();
    });
    document.addEventListener("keydown", (ev) => {
      const t = ev.target as HTMLElement | null;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "BUTTON")) return;
      if (ev.key === " " || ev.key === "k") this.toggle();
      else if (ev.key === "m") this.content.muted = !this.content.muted;
      else if (ev.key === "f") $("fullscreen").click();
      else if (ev.key === "Escape" && !$("click-through").hidden) this.closeClickThrough();
      else return;
      ev.preventDefault();
    });
  }

  // --- rendering ------------------------------------------------------------------------------

  private frame = (): void => {
    this.renderProgress();
    requestAnimationFrame(this.frame);
  };

  private renderProgress(): void {
    const c = this.content;
    const d = this.snapshot().duration ?? 0;
    const t = this.switching ? this.lastTime : c.currentTime;
    const pct = d > 0 ? Math.min(100, (t / d) * 100) : 0;
    $("progress-played").style.width = `${pct}%`;
    $("progress-thumb").style.left = `${pct}%`;
    $("progress").setAttribute("aria-valuenow", String(Math.round(pct)));
    let buffered = 0;
    for (let i = 0; i < c.buffered.length; i++) buffered = Math.max(buffered, c.buffered.end(i));
    $("progress-buffered").style.width = `${d > 0 ? Math.min(100, (buffered / d) * 100) : 0}%`;
    $("time").textContent = `${formatTime(t)} / ${formatTime(d)}`;
    if (this.mode === "ad") {
      $("ad-progress-fill").style.width = `${this.adPercent()}%`;
      const left = SKIP_AFTER_S - this.adVideo.currentTime;
      const skip = $("skip-ad") as HTMLButtonElement;
      skip.disabled = left > 0;
      $("skip-label").textContent = left > 0 ? `Skip in ${Math.ceil(left)}` : "Skip ad ›";
    }
  }

  private render(): void {
    const r = this.root;
    const ad = this.currentAd();
    const inAd = this.mode === "ad" && ad !== undefined && this.ad !== null;
    const playing =
      this.mode === "ad" ? !(this.ad?.userPaused ?? false) && !this.adVideo.paused : !this.content.paused;
    r.dataset.state = this.mode === "ad" ? "ad" : this.mode === "content" ? (this.content.paused ? "paused" : "playing") : this.mode;
    r.dataset.playing = String(playing);
    r.dataset.buffering = String(this.buffering);
    r.dataset.muted = String(this.content.muted);
    r.dataset.quality = this.rendition.quality;
    r.dataset.switching = String(this.switching);
    r.dataset.ad = inAd && this.ad ? `${this.ad.index + 1}/${this.ad.brk.ads.length}` : "";
    this.adVideo.hidden = !inAd;
    $("ad-chrome").hidden = !inAd;
    $("ad-click-area").hidden = !inAd;
    $("surface").hidden = this.mode !== "content";
    $("start-card").hidden = this.mode !== "idle";
    $("end-card").hidden = this.mode !== "ended";
    $("spinner").hidden = !this.buffering;
    if (inAd && ad && this.ad) {
      $("ad-badge").textContent = `Ad ${this.ad.index + 1} of ${this.ad.brk.ads.length}`;
      $("ad-name").textContent = `${ad.name} · ${ad.advertiser}`;
    }
    const pp = $("play-pause");
    pp.setAttribute("aria-label", playing ? "Pause" : "Play");
    $("progress").classList.toggle("disabled", this.mode === "ad" || this.mode === "idle");
    ($("volume") as HTMLInputElement).value = String(this.content.muted ? 0 : Math.round(this.content.volume * 100));
    const rate = $("rate") as HTMLSelectElement;
    const current = String(this.content.playbackRate);
    if (!Array.from(rate.options).some((o) => o.value === current)) {
      rate.append(new Option(`${current}×`, current)); // a rate set from outside the menu
    }
    rate.value = current;
    ($("quality") as HTMLSelectElement).value = this.rendition.quality;
    const markers = $("progress-markers");
    const d = this.snapshot().duration ?? 0;
    if (markers.childElementCount === 0 && d > 0) {
      for (const b of AD_BREAKS.filter((x) => x.at > 0)) {
        const m = document.createElement("span");
        m.className = "marker";
        m.style.left = `${b.at * 100}%`;
        m.title = `${b.name}: ${b.ads.length} ad${b.ads.length > 1 ? "s" : ""}`;
        markers.append(m);
      }
    }
    for (const m of Array.from(markers.children)) {
      m.classList.toggle("played", this.played.has("mid-roll"));
    }
    this.renderProgress();
  }
}
