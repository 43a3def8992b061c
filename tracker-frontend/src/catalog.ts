/** What the demo plays: one programme in two renditions and its ad breaks (media/ clips). */

export interface Rendition {
  quality: string; // shown in the quality menu and sent as the player's `quality`
  src: string;
  bitrate: number; // bits per second, approximate
}

export interface Ad {
  adId: string;
  creativeId: string;
  name: string;
  advertiser: string;
  src: string;
  duration: number; // seconds (the clip's length)
}

export interface AdBreak {
  breakId: string;
  name: string; // "pre-roll", "mid-roll"
  /** Where the break plays, as a fraction of the content's duration (0 = before it starts). */
  at: number;
  ads: Ad[];
}

export const TITLE = "Big Stream Demo";
export const SUBTITLE = "Episode 1 · a 24-second test card with ads";

/** Seconds of an ad after which it may be skipped. */
export const SKIP_AFTER_S = 5;

export const RENDITIONS: Rendition[] = [
  { quality: "360p", src: "media/content-360p.webm", bitrate: 46_000 },
  { quality: "180p", src: "media/content-180p.webm", bitrate: 33_000 },
];

const AD_ROCKETS: Ad = {
  adId: "ad-acme-rocket-skates",
  creativeId: "acme-rs-8s",
  name: "Acme Rocket Skates",
  advertiser: "Acme Corp.",
  src: "media/ad1.webm",
  duration: 8,
};
const AD_COFFEE: Ad = {
  adId: "ad-nimbus-coffee",
  creativeId: "nimbus-6s",
  name: "Nimbus Coffee",
  advertiser: "Nimbus Roasters",
  src: "media/ad2.webm",
  duration: 6,
};
const AD_CLOUD: Ad = {
  adId: "ad-polar-bytes",
  creativeId: "polar-7s",
  name: "Polar Bytes Cloud",
  advertiser: "Polar Bytes Inc.",
  src: "media/ad3.webm",
  duration: 7,
};

export const AD_BREAKS: AdBreak[] = [
  { breakId: "pre-roll", name: "pre-roll", at: 0, ads: [AD_ROCKETS, AD_COFFEE] },
  { breakId: "mid-roll", name: "mid-roll", at: 0.5, ads: [AD_CLOUD] },
];
