/* A small hand-written SVG line chart: active viewers over the last 15 minutes. */
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const SPAN_MS = 15 * 60 * 1000;

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceMax(v) {
    if (v <= 4) return 4;
    const mag = Math.pow(10, Math.floor(Math.log10(v)));
    for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
      if (step * mag >= v * 1.08) return step * mag;
    }
    return 10 * mag;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  class LiveChart {
    constructor(container) {
      this.container = container;
      this.points = [];
      this.now = Date.now();
      this.tip = document.createElement("div");
      this.tip.className = "chart-tip";
      this.tip.hidden = true;
      this.empty = document.createElement("div");
      this.empty.className = "chart-empty";
      this.empty.textContent = "Collecting samples…";
      container.append(this.tip, this.empty);
      this.svg = el("svg", { preserveAspectRatio: "none" }, null);
      container.prepend(this.svg);
      new ResizeObserver(() => this.render()).observe(container);
      this.svg.addEventListener("mousemove", (e) => this.hover(e));
      this.svg.addEventListener("mouseleave", () => this.hover(null));
    }

    /** points: [{t: epoch ms, v: number}], oldest first; now: server time (ms). */
    update(points, now) {
      this.points = points;
      this.now = now;
      this.render();
    }

    render() {
      const w = this.container.clientWidth;
      const h = this.container.clientHeight;
      if (!w || !h) return;
      const pad = { l: 40, r: 14, t: 10, b: 24 };
      this.geom = { w, h, pad };
      const svg = this.svg;
      svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
      svg.replaceChildren();
      const defs = el("defs", {}, svg);
      const grad = el("linearGradient", { id: "area-grad", x1: 0, y1: 0, x2: 0, y2: 1 }, defs);
      el("stop", { offset: "0%", "stop-color": "#22c55e", "stop-opacity": 0.32 }, grad);
      el("stop", { offset: "100%", "stop-color": "#22c55e", "stop-opacity": 0 }, grad);

      const t1 = this.now;
      const t0 = t1 - SPAN_MS;
      const pts = this.points.filter((p) => p.t >= t0 - 10000);
      const max = niceMax(Math.max(1, ...pts.map((p) => p.v)));
      const x = (t) => pad.l + ((t - t0) / SPAN_MS) * (w - pad.l - pad.r);
      const y = (v) => pad.t + (1 - v / max) * (h - pad.t - pad.b);
      this.scale = { x, y, t0, t1, max };

      for (let i = 0; i <= 4; i++) {
        const v = (max / 4) * i;
        const yy = Math.round(y(v)) + 0.5;
        el("line", { class: "grid-line", x1: pad.l, x2: w - pad.r, y1: yy, y2: yy }, svg);
        const label = el("text", { class: "axis-label", x: pad.l - 8, y: yy + 4, "text-anchor": "end" }, svg);
        label.textContent = Number.isInteger(v) ? v.toLocaleString() : v.toFixed(1);
      }
      for (let m = 15; m >= 0; m -= 5) {
        const t = t1 - m * 60000;
        const label = el("text", { class: "axis-label", x: x(t), y: h - 6, "text-anchor": m === 15 ? "start" : m === 0 ? "end" : "middle" }, svg);
        label.textContent = m === 0 ? "now" : `${fmtTime(t)}`;
      }

      this.empty.hidden = pts.length >= 2;
      if (pts.length < 2) return;
      const clamp = (t) => Math.max(t0, t);
      const line = pts.map((p, i) => `${i ? "L" : "M"}${x(clamp(p.t)).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
      const last = pts[pts.length - 1];
      const area = `${line}L${x(last.t).toFixed(1)},${y(0)}L${x(clamp(pts[0].t)).toFixed(1)},${y(0)}Z`;
      el("path", { d: area, fill: "url(#area-grad)" }, svg);
      el("path", { d: line, class: "line" }, svg);
      el("circle", { class: "dot", cx: x(last.t), cy: y(last.v), r: 4 }, svg);
      this.hoverLine = el("line", { class: "hover-line", y1: pad.t, y2: h - pad.b, x1: -10, x2: -10 }, svg);
      this.hoverDot = el("circle", { class: "dot hover-dot", r: 3.5, cx: -10, cy: -10 }, svg);
    }

    hover(e) {
      if (!e || !this.scale || this.points.length < 2 || !this.hoverLine) {
        this.tip.hidden = true;
        this.container.classList.remove("hovering");
        return;
      }
      this.container.classList.add("hovering");
      const rect = this.svg.getBoundingClientRect();
      const px = e.clientX - rect.left;
      const { x, y, t0, t1 } = this.scale;
      const t = t0 + ((px - this.geom.pad.l) / (this.geom.w - this.geom.pad.l - this.geom.pad.r)) * (t1 - t0);
      let best = this.points[0];
      for (const p of this.points) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      const bx = x(Math.max(t0, best.t));
      this.hoverLine.setAttribute("x1", bx);
      this.hoverLine.setAttribute("x2", bx);
      this.hoverDot.setAttribute("cx", bx);
      this.hoverDot.setAttribute("cy", y(best.v));
      this.tip.hidden = false;
      this.tip.style.left = `${bx}px`;
      this.tip.style.top = `${y(best.v)}px`;
      this.tip.replaceChildren();
      const b = document.createElement("b");
      b.textContent = best.v.toLocaleString();
      const d = new Date(best.t);
      this.tip.append(b, ` viewers · ${fmtTime(best.t)}:${String(d.getSeconds()).padStart(2, "0")}`);
    }
  }

  window.LiveChart = LiveChart;
})();
