/* Live viewers page: session login, SSE snapshot + deltas, stats polling, table and panel.
 * Everything user-controlled (media labels, ad names, errors) is written with textContent.
 *
 * Scale: the page holds one window of rows (MAX_ROWS), never the whole audience. The stream is
 * subscribed to that window (?limit, ?status, ?q: the server filters), so its deltas carry the
 * counts plus this window's rows only, and touches of them as small patches. Positions of
 * playing viewers move on between pings by extrapolation (position + elapsed x rate). */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const STATUSES = ["watching", "watching_ad", "buffering", "paused", "idle"];
  const LABEL = {
    watching: "Watching",
    watching_ad: "Watching ad",
    buffering: "Buffering",
    paused: "Paused",
    idle: "Idle",
    ended: "Ended",
  };
  const ORDER = { watching: 0, watching_ad: 1, buffering: 2, paused: 3, idle: 4, ended: 5 };
  const STATUS_COLOR = {
    watching: "#22c55e",
    watching_ad: "#f59e0b",
    buffering: "#f97316",
    paused: "#60a5fa",
    idle: "#94a3b8",
    ended: "#475569",
  };
  const MAX_ROWS = 200;
  const SEARCH_DEBOUNCE_MS = 300;
  const STATS_EVERY_MS = 5000;
  const OFFLINE_AFTER_MS = 10000;
  const STALE_S = 60; // media pings come every ~30 s; a viewer leaves the view after 75 s
  const nf = new Intl.NumberFormat("en-US");

  const state = {
    viewers: new Map(),
    counts: { active: 0, by_status: {}, by_media: {}, total: 0 },
    touchFields: [],
    searchTimer: null,
    lastId: null,
    skew: 0,
    selected: null,
    panelProfile: null,
    panelHistory: null,
    historyTimer: null,
    search: "",
    status: null,
    sort: "status",
    stats: null,
    es: null,
    backoff: 1000,
    reconnectTimer: null,
    offlineTimer: null,
    renderQueued: false,
    rows: new Map(),
    chart: null,
    started: false,
    statsTimer: null,
  };

  // --- helpers --------------------------------------------------------------------------------
  function h(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const serverNow = () => Date.now() + state.skew;
  const shortId = (id) => (id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id);

  function clockTime(sec) {
    if (sec === null || sec === undefined || !isFinite(sec)) return "–";
    sec = Math.max(0, Math.floor(sec));
    const hh = Math.floor(sec / 3600);
    const mm = Math.floor((sec % 3600) / 60);
    const ss = String(sec % 60).padStart(2, "0");
    return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
  }
  function duration(sec) {
    if (sec === null || sec === undefined || !isFinite(sec)) return "–";
    if (sec < 10) return `${sec.toFixed(1)} s`;
    if (sec < 60) return `${Math.round(sec)} s`;
    const m = Math.floor(sec / 60);
    if (m < 60) return `${m}m ${String(Math.round(sec % 60)).padStart(2, "0")}s`;
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
  }
  function ago(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t)) return "–";
    const s = Math.max(0, Math.round((serverNow() - t) / 1000));
    if (s < 2) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }
  function when(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t)) return "–";
    const d = new Date(t);
    const time = d.toLocaleTimeString("en-GB", { hour12: false });
    const today = new Date(serverNow()).toDateString() === d.toDateString();
    return today ? time : `${d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" })} ${time}`;
  }
  function badge(status) {
    return h("span", `badge s-${status in LABEL ? status : "idle"}`, LABEL[status] || status || "unknown");
  }
  function progressOf(p) {
    if (p.duration_s > 0 && p.position_s !== null && p.position_s !== undefined) {
      return Math.min(100, Math.max(0, (p.position_s / p.duration_s) * 100));
    }
    return typeof p.percent_progress === "number" ? Math.min(100, Math.max(0, p.percent_progress)) : 0;
  }
  // where a playing viewer is now: its last position moved on by the time since (at its rate)
  function positionNow(p) {
    if (p.status !== "watching" || p.position_s === null || p.position_s === undefined) return p.position_s;
    const seen = Date.parse(p.last_seen);
    if (!isFinite(seen)) return p.position_s;
    const rate = typeof p.playback_rate === "number" && p.playback_rate > 0 ? p.playback_rate : 1;
    const pos = p.position_s + (Math.max(0, serverNow() - seen) / 1000) * rate;
    return p.duration_s > 0 ? Math.min(p.duration_s, pos) : pos;
  }
  function progressText(p, pos) {
    return p.duration_s > 0 ? `${clockTime(pos)} / ${clockTime(p.duration_s)}` : pos !== null && pos !== undefined ? `${clockTime(pos)} · live` : "–";
  }
  function progressEl(p) {
    p = { ...p, position_s: positionNow(p) };
    const wrap = h("div", "progress");
    if (p.status === "watching_ad") wrap.classList.add("is-ad");
    if (p.status === "paused") wrap.classList.add("is-paused");
    const meter = h("div", "meter");
    const fill = h("span");
    fill.style.width = `${progressOf(p).toFixed(1)}%`;
    meter.append(fill);
    wrap.append(meter, h("span", "time", progressText(p, p.position_s)));
    return wrap;
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    if (opts.body) headers["Content-Type"] = "application/json";
    return fetch(path, { credentials: "same-origin", cache: "no-store", ...opts, headers });
  }

  // --- connection state --------------------------------------------------------------------
  function setConn(kind, text) {
    const el = $("conn");
    el.className = `conn conn-${kind}`;
    el.querySelector("span").textContent = text || kind;
    el.dataset.state = kind;
    if (kind === "live") {
      clearTimeout(state.offlineTimer);
      state.offlineTimer = null;
    } else if (kind === "reconnecting" && !state.offlineTimer) {
      state.offlineTimer = setTimeout(() => {
        if ($("conn").dataset.state !== "live") setConn("offline", "offline · retrying");
      }, OFFLINE_AFTER_MS);
    }
  }

  // --- login -----------------------------------------------------------------------------
  function showLogin(message) {
    stopStream();
    state.started = false;
    $("dashboard").hidden = true;
    $("logout").hidden = true;
    closePanel();
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConn("offline", "signed out");
    setTimeout(() => $("token").focus(), 0);
  }

  async function onLogin(e) {
    e.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    if (!token) return;
    $("login-btn").disabled = true;
    $("login-error").textContent = "";
    try {
      const r = await api("/api/login", { method: "POST", body: JSON.stringify({ token }) });
      if (r.ok) {
        input.value = "";
        start();
      } else {
        const retry = r.headers.get("Retry-After");
        $("login-error").textContent =
          r.status === 401
            ? "That token was not accepted."
            : r.status === 429
              ? `Too many failed attempts. Try again in ${retry || "a few"} s.`
              : `Sign-in failed (${r.status}).`;
      }
    } catch (err) {
      $("login-error").textContent = "Cannot reach the server.";
    } finally {
      $("login-btn").disabled = false;
    }
  }

  async function onLogout() {
    try {
      await api("/api/logout", { method: "POST", body: "{}" });
    } catch (err) {
      /* signed out locally anyway */
    }
    state.viewers.clear();
    state.lastId = null;
    showLogin();
  }

  // --- stream ----------------------------------------------------------------------------
  function stopStream() {
    clearTimeout(state.reconnectTimer);
    if (state.es) state.es.close();
    state.es = null;
  }

  function connect() {
    stopStream();
    let url = `/api/viewers/stream?limit=${MAX_ROWS}`;
    if (state.status) url += `&status=${encodeURIComponent(state.status)}`;
    if (state.search) url += `&q=${encodeURIComponent(state.search.slice(0, 64))}`;
    if (state.lastId) url += `&last_event_id=${encodeURIComponent(state.lastId)}`;
    const es = new EventSource(url);
    state.es = es;
    es.addEventListener("open", () => {
      if (es !== state.es) return;
      state.backoff = 1000;
      setConn("live");
    });
    es.addEventListener("snapshot", (e) => es === state.es && onSnapshot(JSON.parse(e.data), e.lastEventId));
    es.addEventListener("delta", (e) => es === state.es && onDelta(JSON.parse(e.data), e.lastEventId));
    es.addEventListener("error", () => {
      if (es !== state.es) return;
      if (es.readyState === EventSource.CLOSED) {
        // refused (401 / 429) or not an event stream: find out why, then reconnect ourselves
        setConn("reconnecting");
        recover();
      } else {
        setConn("reconnecting"); // the browser retries on its own, sending Last-Event-ID
      }
    });
  }

  async function recover() {
    stopStream();
    try {
      const r = await api("/api/session");
      if (r.status === 401) {
        showLogin("Your session has ended. Sign in again.");
        return;
      }
    } catch (err) {
      setConn("offline", "offline · retrying");
    }
    const wait = state.backoff;
    state.backoff = Math.min(state.backoff * 2, 15000);
    state.reconnectTimer = setTimeout(() => state.started && connect(), wait);
  }

  function setSkew(generatedAt) {
    const t = Date.parse(generatedAt);
    if (isFinite(t)) state.skew = t - Date.now();
  }

  // another window (status filter, search): a fresh snapshot of it, not the old window's deltas
  function resubscribe() {
    state.lastId = null;
    if (state.started) connect();
  }

  function onSnapshot(snap, id) {
    setSkew(snap.generated_at);
    state.viewers = new Map(snap.viewers.map((p) => [p.viewer_id, p]));
    state.counts = { active: snap.active, by_status: snap.by_status, by_media: snap.by_media, media_titles: snap.media_titles, total: snap.total };
    state.touchFields = snap.touch_fields || state.touchFields;
    state.lastId = id || state.lastId;
    if (state.selected && state.viewers.has(state.selected)) refreshPanelLive(state.viewers.get(state.selected));
    scheduleRender();
  }

  function onDelta(delta, id) {
    setSkew(delta.generated_at);
    for (const p of delta.upsert) {
      const before = state.viewers.get(p.viewer_id);
      state.viewers.set(p.viewer_id, p);
      if (before && before.status !== p.status) {
        const row = state.rows.get(p.viewer_id);
        if (row) row._flash = true;
      }
      if (p.viewer_id === state.selected) refreshPanelLive(p, before);
    }
    for (const vid of delta.remove) {
      state.viewers.delete(vid);
      if (vid === state.selected) markPanelInactive();
    }
    const fields = delta.touch_fields || state.touchFields;
    for (const row of delta.touch || []) {
      const before = state.viewers.get(row[0]);
      if (!before) continue;
      const p = { ...before };
      for (let i = 0; i < fields.length; i++) p[fields[i]] = row[i + 1];
      state.viewers.set(p.viewer_id, p);
      if (p.viewer_id === state.selected) refreshPanelLive(p, before);
    }
    state.counts = delta.counts;
    state.lastId = id || state.lastId;
    scheduleRender();
  }

  // --- stats -----------------------------------------------------------------------------
  async function loadStats() {
    if (!state.started) return;
    try {
      const r = await api("/api/stats");
      if (r.status === 401) {
        showLogin("Your session has ended. Sign in again.");
        return;
      }
      if (!r.ok) return;
      state.stats = await r.json();
      setSkew(state.stats.generated_at);
      renderStats();
    } catch (err) {
      /* the stream's state shows the outage */
    }
  }

  function renderStats() {
    const s = state.stats;
    if (!s) return;
    const epm = s.events_per_min || {};
    const fmt = (v) => (v === null || v === undefined ? "–" : v >= 100 ? nf.format(Math.round(v)) : v.toFixed(1));
    $("kpi-epm").textContent = fmt(epm["1m"]);
    $("kpi-epm-foot").textContent = `5 min ${fmt(epm["5m"])} · 15 min ${fmt(epm["15m"])}`;
    const q = s.qoe || {};
    setKpi("kpi-startup", q.median_startup_time_s === null || q.median_startup_time_s === undefined ? "–" : q.median_startup_time_s.toFixed(2), "s");
    setKpi("kpi-rebuffer", q.rebuffering_ratio === null || q.rebuffering_ratio === undefined ? "–" : (q.rebuffering_ratio * 100).toFixed(1), "%");
    setKpi("kpi-errors", q.errors_per_viewer_hour === null || q.errors_per_viewer_hour === undefined ? "–" : q.errors_per_viewer_hour.toFixed(2));
    $("kpi-errors-foot").textContent = `${nf.format(q.errors || 0)} errors · ${(q.viewer_hours || 0).toFixed(1)} viewer-hours`;
    renderFunnel(s.ads || {});
    renderChart();
  }

  function setKpi(id, value, unit) {
    const el = $(id);
    el.replaceChildren(document.createTextNode(value));
    if (unit && value !== "–") el.append(h("small", null, unit));
  }

  function renderFunnel(ads) {
    const list = $("ad-funnel");
    const rows = [
      ["Ad breaks", ads.ad_breaks],
      ["Ads started", ads.ads_started],
      ["Completed", ads.ads_completed],
      ["Skipped", ads.ads_skipped],
      ["Clicked", ads.ads_clicked],
    ];
    const base = Math.max(1, ads.ads_started || 0);
    const max = Math.max(1, ...rows.map((r) => r[1] || 0));
    list.replaceChildren();
    for (const [label, value] of rows) {
      const li = h("li", "bar-row");
      const v = h("span", "value", nf.format(value || 0));
      if (label !== "Ad breaks" && label !== "Ads started") v.append(h("small", null, `${Math.round(((value || 0) / base) * 100)}%`));
      const meter = h("div", "meter");
      const fill = h("span", "fill-ad");
      fill.style.width = `${((value || 0) / max) * 100}%`;
      meter.append(fill);
      li.append(h("span", "label", label), v, meter);
      list.append(li);
    }
  }

  function renderChart() {
    if (!state.chart) return;
    const pts = ((state.stats && state.stats.active_series && state.stats.active_series.points) || []).map((p) => ({
      t: Date.parse(p.t),
      v: p.active,
    }));
    const now = serverNow();
    if (state.lastId !== null) pts.push({ t: now, v: state.counts.active }); // the live count, once known
    state.chart.update(pts, now);
  }

  // --- rendering -------------------------------------------------------------------------
  function scheduleRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => {
      state.renderQueued = false;
      render();
    });
  }

  function render() {
    const c = state.counts;
    $("kpi-active").textContent = nf.format(c.active || 0);
    const watching = (c.by_status && c.by_status.watching) || 0;
    $("kpi-active-foot").textContent = `${nf.format(watching)} watching · ${nf.format(c.active - watching)} other`;
    renderStatusList();
    renderMedia();
    renderTable();
    renderChart();
  }

  function renderStatusList() {
    const list = $("status-list");
    const total = Math.max(1, state.counts.active || 0);
    list.replaceChildren();
    for (const s of STATUSES) {
      const n = (state.counts.by_status && state.counts.by_status[s]) || 0;
      const li = h("li", "status-item");
      li.dataset.status = s;
      if (state.status === s) li.classList.add("active");
      li.title = state.status === s ? "Show all statuses" : `Show only ${LABEL[s].toLowerCase()}`;
      const meter = h("div", "meter");
      const fill = h("span", `bg-${s}`);
      fill.style.width = `${(n / total) * 100}%`;
      meter.append(fill);
      const left = h("div");
      left.append(badge(s));
      li.append(left, meter, h("span", "count", nf.format(n)));
      li.addEventListener("click", () => {
        state.status = state.status === s ? null : s;
        resubscribe();
        render();
      });
      list.append(li);
    }
  }

  function renderMedia() {
    const entries = Object.entries(state.counts.by_media || {}).sort((a, b) => b[1] - a[1]);
    const list = $("media-list");
    list.replaceChildren();
    const titles = state.counts.media_titles || entries.length;
    $("media-sub").textContent = titles ? `${nf.format(titles)} title${titles === 1 ? "" : "s"} playing` : "";
    if (!entries.length) {
      list.append(h("li", "bars-empty", "Nothing playing right now."));
      return;
    }
    const max = entries[0][1];
    for (const [label, n] of entries.slice(0, 6)) {
      const li = h("li", "bar-row");
      const name = h("span", "label", label === "unknown" ? "(no media yet)" : label);
      name.title = label;
      const meter = h("div", "meter");
      const fill = h("span", "fill-accent");
      fill.style.width = `${(n / max) * 100}%`;
      meter.append(fill);
      li.append(name, h("span", "value", nf.format(n)), meter);
      list.append(li);
    }
  }

  function sorted(list) {
    const by = state.sort;
    const seen = (p) => Date.parse(p.last_seen) || 0;
    const cmp = {
      status: (a, b) => (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9) || (a.media_label || "").localeCompare(b.media_label || "") || a.viewer_id.localeCompare(b.viewer_id),
      recent: (a, b) => seen(b) - seen(a) || a.viewer_id.localeCompare(b.viewer_id),
      progress: (a, b) => progressOf(b) - progressOf(a) || a.viewer_id.localeCompare(b.viewer_id),
      events: (a, b) => (b.events || 0) - (a.events || 0) || a.viewer_id.localeCompare(b.viewer_id),
    }[by];
    return list.sort(cmp);
  }

  function renderTable() {
    const q = state.search.toLowerCase();
    let list = [...state.viewers.values()];
    if (state.status) list = list.filter((p) => p.status === state.status);
    if (q) list = list.filter((p) => p.viewer_id.includes(q) || (p.media_label || "").toLowerCase().includes(q));
    const shown = sorted(list).slice(0, MAX_ROWS);
    const tbody = $("rows");
    const keep = new Set();
    let prev = null;
    for (const p of shown) {
      let row = state.rows.get(p.viewer_id);
      if (!row) {
        row = createRow(p.viewer_id);
        state.rows.set(p.viewer_id, row);
      }
      if (row._p !== p) fillRow(row, p);
      row.classList.toggle("selected", p.viewer_id === state.selected);
      keep.add(p.viewer_id);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== row) tbody.insertBefore(row, want);
      prev = row;
    }
    for (const [vid, row] of state.rows) {
      if (!keep.has(vid)) {
        row.remove();
        state.rows.delete(vid);
      }
    }
    const filtered = state.status || q;
    const total = state.counts.total ?? state.counts.active ?? 0;
    $("table-sub").textContent = filtered
      ? `${nf.format(shown.length)} of ${nf.format(total)} match${total === 1 ? "" : "es"}${state.status ? ` · ${LABEL[state.status].toLowerCase()}` : ""}`
      : `${nf.format(shown.length)} of ${nf.format(total)} active`;
    $("empty").hidden = shown.length > 0;
    if (!shown.length) {
      $("empty").querySelector(".empty-title").textContent = filtered ? "No viewers match" : "No active viewers";
    }
  }

  function createRow(vid) {
    const tr = h("tr");
    tr.dataset.viewer = vid;
    tr.addEventListener("click", () => openPanel(vid));
    return tr;
  }

  function fillRow(tr, p) {
    tr._p = p;
    tr.dataset.status = p.status;
    const id = h("td", "vid");
    const code = h("span", null, shortId(p.viewer_id));
    code.title = p.viewer_id;
    id.append(code);
    if (p.device_class) id.append(h("span", "dev", p.device_class));
    const status = h("td");
    status.append(badge(p.status));
    const media = h("td", "media", p.media_label || "–");
    if (p.media_label) media.title = p.media_label;
    else media.classList.add("dash");
    const prog = h("td");
    prog.append(progressEl(p));
    const ad = h("td");
    if (p.ad && (p.status === "watching_ad" || p.ad.name || p.ad.ad_id)) {
      const chip = h("span", "ad-chip", p.ad.name || p.ad.ad_id || "ad");
      chip.title = [p.ad.name, p.ad.ad_id && `ad ${p.ad.ad_id}`, p.ad.break_id && `break ${p.ad.break_id}`].filter(Boolean).join(" · ");
      ad.append(chip);
    } else {
      ad.append(h("span", "dash", "–"));
    }
    const nums = [p.plays, p.pauses, p.seeks, p.ads_started, p.buffer_events, p.errors].map((v, i) => {
      const td = h("td", "num", nf.format(v || 0));
      if (!v) td.classList.add("zero");
      if (i === 5 && v) td.className = "num err";
      return td;
    });
    const seen = h("td", "num");
    const agoEl = h("span", "ago", ago(p.last_seen));
    agoEl.dataset.ts = p.last_seen;
    agoEl.title = p.last_seen;
    seen.append(agoEl);
    tr.replaceChildren(id, status, media, prog, ad, ...nums, seen);
    if (tr._flash) {
      tr._flash = false;
      tr.classList.remove("flash");
      void tr.offsetWidth;
      tr.classList.add("flash");
    }
  }

  function tick() {
    $("clock").textContent = `${new Date(serverNow()).toISOString().slice(11, 19)} UTC`;
    for (const row of state.rows.values()) {
      const p = row._p;
      if (!p || p.status !== "watching") continue;
      const pos = positionNow(p);
      const fill = row.querySelector(".progress .meter span");
      if (fill) fill.style.width = `${progressOf({ ...p, position_s: pos }).toFixed(1)}%`;
      const time = row.querySelector(".progress .time");
      if (time) time.textContent = progressText(p, pos);
    }
    for (const el of document.querySelectorAll(".ago[data-ts]")) {
      el.textContent = ago(el.dataset.ts);
      const age = (serverNow() - Date.parse(el.dataset.ts)) / 1000;
      el.classList.toggle("stale", age > STALE_S);
    }
  }

  // --- profile panel ---------------------------------------------------------------------
  async function openPanel(vid) {
    state.selected = vid;
    state.panelProfile = state.viewers.get(vid) || null;
    state.panelHistory = null;
    $("panel-title").textContent = vid;
    $("panel").classList.add("open");
    $("panel").setAttribute("aria-hidden", "false");
    $("scrim").hidden = false;
    for (const [id, row] of state.rows) row.classList.toggle("selected", id === vid);
    renderPanel();
    const enc = encodeURIComponent(vid);
    try {
      const [pr, hr] = await Promise.all([api(`/api/profiles/${enc}`), api(`/api/profiles/${enc}/history?limit=50`)]);
      if (state.selected !== vid) return;
      if (pr.status === 401) return showLogin("Your session has ended. Sign in again.");
      if (pr.status === 404) {
        state.panelProfile = state.panelProfile || { viewer_id: vid, _missing: true };
        if (!state.viewers.has(vid)) state.panelProfile._missing = true;
      } else if (pr.ok) {
        const stored = await pr.json();
        const live = state.viewers.get(vid);
        state.panelProfile = live && Date.parse(live.last_seen) >= Date.parse(stored.last_seen) ? live : stored;
      }
      state.panelHistory = hr.ok ? (await hr.json()).items : [];
    } catch (err) {
      state.panelHistory = state.panelHistory || [];
    }
    if (state.selected === vid) renderPanel();
  }

  function closePanel() {
    state.selected = null;
    $("panel").classList.remove("open");
    $("panel").setAttribute("aria-hidden", "true");
    $("scrim").hidden = true;
    for (const row of state.rows.values()) row.classList.remove("selected");
  }

  function refreshPanelLive(p, before) {
    state.panelProfile = p;
    renderPanel();
    if (before && before.status !== p.status) {
      clearTimeout(state.historyTimer);
      const vid = p.viewer_id;
      state.historyTimer = setTimeout(async () => {
        try {
          const r = await api(`/api/profiles/${encodeURIComponent(vid)}/history?limit=50`);
          if (r.ok && state.selected === vid) {
            state.panelHistory = (await r.json()).items;
            renderPanel();
          }
        } catch (err) {
          /* keep the old history */
        }
      }, 1500);
    }
  }

  function markPanelInactive() {
    if (state.panelProfile) state.panelProfile = { ...state.panelProfile, active: false };
    renderPanel();
  }

  function section(title, ...children) {
    const s = h("section", "panel-section");
    s.append(h("h3", null, title), ...children);
    return s;
  }

  function kv(pairs, cls) {
    const grid = h("div", `kv ${cls || ""}`);
    for (const [k, v] of pairs) {
      const cell = h("div");
      cell.append(h("div", "k", k), h("div", "v", v));
      if (typeof v === "string") cell.lastChild.title = v;
      grid.append(cell);
    }
    return grid;
  }

  function renderPanel() {
    const body = $("panel-body");
    const p = state.panelProfile;
    body.replaceChildren();
    if (!p) {
      for (let i = 0; i < 6; i++) body.append(h("div", "skeleton"));
      return;
    }
    if (p._missing) {
      body.append(h("div", "muted", "No stored profile for this viewer (it may have been erased)."));
      return;
    }
    // now playing
    const now = h("div", "now");
    const top = h("div", "now-top");
    top.append(h("div", "now-title", p.media_label || "No media yet"), badge(p.status));
    now.append(top, progressEl(p));
    const meta = h("div", "now-meta");
    const chips = [
      p.active === false ? "not active" : null,
      p.quality,
      p.playback_rate !== null && p.playback_rate !== undefined ? `${p.playback_rate}×` : null,
      p.muted ? "muted" : p.volume !== null && p.volume !== undefined ? `volume ${p.volume}%` : null,
      p.fullscreen ? "fullscreen" : null,
      p.device_class,
      p.app_id,
    ].filter(Boolean);
    for (const c of chips) meta.append(h("span", "chip", c));
    now.append(meta);
    body.append(now);

    if (p.ad) {
      const ad = kv(
        [
          ["Ad", p.ad.name || "–"],
          ["Ad id", p.ad.ad_id || "–"],
          ["Break", p.ad.break_id || "–"],
        ],
      );
      body.append(section(p.status === "watching_ad" ? "Current ad" : "Last ad", ad));
    }
    if (p.last_error) {
      const box = h("div", "error-box");
      box.append(h("code", null, p.last_error.code || "error"), document.createTextNode(p.last_error.message || ""));
      body.append(section("Last error", box));
    }
    body.append(
      section(
        "Counters",
        kv([
          ["Plays", nf.format(p.plays || 0)],
          ["Pauses", nf.format(p.pauses || 0)],
          ["Seeks", nf.format(p.seeks || 0)],
          ["Buffer events", nf.format(p.buffer_events || 0)],
          ["Errors", nf.format(p.errors || 0)],
          ["Events", nf.format(p.events || 0)],
          ["Ad breaks", nf.format(p.ad_breaks || 0)],
          ["Ads started", nf.format(p.ads_started || 0)],
          ["Completed", nf.format(p.ads_completed || 0)],
          ["Skipped", nf.format(p.ads_skipped || 0)],
          ["Clicked", nf.format(p.ads_clicked || 0)],
          ["Progress", `${Math.round(progressOf(p))}%`],
        ]),
      ),
      section(
        "Time",
        kv([
          ["Playing", duration(p.play_time_s)],
          ["Paused", duration(p.paused_time_s)],
          ["Ads", duration(p.ad_time_s)],
          ["Buffering", duration(p.buffering_time_s)],
          ["Startup", p.startup_time_s === null || p.startup_time_s === undefined ? "–" : `${p.startup_time_s.toFixed(2)} s`],
          ["Position", clockTime(p.position_s)],
        ]),
      ),
      section(
        "Session",
        kv(
          [
            ["First seen", when(p.first_seen)],
            ["Last seen", `${when(p.last_seen)} · ${ago(p.last_seen)}`],
            ["Last event", p.last_event_name || "–"],
            ["Media session", p.media_session_id ? shortId(p.media_session_id) : "–"],
          ],
          "kv-2",
        ),
      ),
    );
    const hist = state.panelHistory;
    const list = h("ol", "timeline");
    if (hist === null) {
      list.append(h("div", "skeleton"));
    } else if (!hist.length) {
      list.append(h("li", "muted", "No status changes recorded yet."));
    } else {
      for (const item of hist) {
        const li = h("li");
        li.style.setProperty("--dot", STATUS_COLOR[item.status] || STATUS_COLOR.idle);
        const what = h("div", "what");
        if (item.prev_status) what.append(badge(item.prev_status), h("span", "arrow", "→"));
        what.append(badge(item.status));
        if (item.event_name) what.append(h("span", "ev", item.event_name));
        li.append(h("div", "when", when(item.at)), what);
        list.append(li);
      }
    }
    body.append(section("Status history", list));
  }

  // --- start -----------------------------------------------------------------------------
  function start() {
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
    state.started = true;
    if (!state.chart) state.chart = new window.LiveChart($("chart"));
    setConn("reconnecting", "connecting");
    connect();
    loadStats();
    clearInterval(state.statsTimer);
    state.statsTimer = setInterval(loadStats, STATS_EVERY_MS);
    render();
  }

  async function boot() {
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", onLogout);
    $("panel-close").addEventListener("click", closePanel);
    $("scrim").addEventListener("click", closePanel);
    document.addEventListener("keydown", (e) => e.key === "Escape" && closePanel());
    $("search").addEventListener("input", (e) => {
      state.search = e.target.value.trim();
      scheduleRender(); // the rows held, filtered at once; the server's matches follow
      clearTimeout(state.searchTimer);
      state.searchTimer = setTimeout(resubscribe, SEARCH_DEBOUNCE_MS);
    });
    $("sort").addEventListener("change", (e) => {
      state.sort = e.target.value;
      scheduleRender();
    });
    window.addEventListener("offline", () => setConn("offline"));
    window.addEventListener("online", () => state.started && state.es && state.es.readyState !== EventSource.OPEN && connect());
    setInterval(tick, 1000);
    tick();
    try {
      const r = await api("/api/session");
      if (r.ok) start();
      else showLogin();
    } catch (err) {
      showLogin("Cannot reach the server.");
    }
  }

  boot();
})();
