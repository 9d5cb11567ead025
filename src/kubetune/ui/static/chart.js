// A small SVG line chart: several series of [x, y] points over shared axes, redrawn when points arrive.
// No dependencies, so the dashboard works offline.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fdf", "#e4572e", "#17a398", "#9b5de5", "#f4a259", "#3d405b", "#c2185b", "#5c940d"];

function svgElement(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

// Round numbers for axis ticks: about `count` steps between lo and hi.
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

// A tick label with as many decimals as the tick spacing `step` needs (exponent form when tiny or huge).
function formatTick(value, step) {
  const size = Math.abs(value);
  const spacing = step || size || 1;
  const power = (x) => Math.floor(Math.log10(x) + 1e-9); // 1e-9: 0.1 + 0.2 style rounding
  const decimals = Math.max(0, -power(spacing));
  if (size < 1e5 && decimals <= 4) return value.toFixed(decimals);
  if (size === 0) return "0";
  const digits = power(size) - power(spacing);
  return value.toExponential(Math.min(Math.max(digits, 1), 4));
}

// A value shown in a legend: four significant digits.
function formatValue(value) {
  const size = Math.abs(value);
  return size !== 0 && (size >= 1e5 || size < 1e-4) ? value.toExponential(3) : String(+value.toPrecision(4));
}

class LineChart {
  // container: an element; options: {title, xLabel}
  constructor(container, options) {
    this.container = container;
    this.options = options || {};
    this.series = new Map(); // name -> {color, points}
    container.classList.add("chart");
    this.titleNode = document.createElement("div");
    this.titleNode.className = "title";
    this.titleNode.textContent = this.options.title || "";
    this.svg = svgElement("svg", { viewBox: "0 0 600 240", role: "img" });
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    container.append(this.titleNode, this.svg, this.legend);
    this.render();
  }

  // Replace a series' points (sorted by x); a new series takes the next palette colour.
  setSeries(name, points, color) {
    const known = this.series.get(name);
    this.series.set(name, { color: color || (known && known.color) || PALETTE[this.series.size % PALETTE.length], points });
    this.render();
  }

  // Add points to a series (creating it when new).
  addPoints(name, points, color) {
    const known = this.series.get(name);
    this.setSeries(name, (known ? known.points : []).concat(points), color);
  }

  clear() { this.series.clear(); this.render(); }

  pointCount(name) { const s = this.series.get(name); return s ? s.points.length : 0; }

  render() {
    const svg = this.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const width = 600, height = 240, left = 60, right = 12, top = 10, bottom = 26;
    const all = [];
    for (const s of this.series.values()) for (const p of s.points) if (Number.isFinite(p[1])) all.push(p);
    if (!all.length) {
      const empty = svgElement("text", { x: width / 2, y: height / 2, "text-anchor": "middle", fill: "#9aa3b2", "font-size": 13 });
      empty.textContent = "no data yet";
      svg.append(empty);
    }
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (!all.length) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { const pad = Math.abs(y0) * 0.05 || 1; y0 -= pad; y1 += pad; }
    const yPad = (y1 - y0) * 0.06; y0 -= yPad; y1 += yPad;
    const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
    const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
    const axis = { stroke: "#d5d9e0", "stroke-width": 1 };
    svg.append(svgElement("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, ...axis }));
    svg.append(svgElement("line", { x1: left, y1: top, x2: left, y2: height - bottom, ...axis }));
    const yTicks = niceTicks(y0, y1, 5);
    const yStep = yTicks.length > 1 ? yTicks[1] - yTicks[0] : undefined;
    for (const t of yTicks) {
      svg.append(svgElement("line", { x1: left, y1: sy(t), x2: width - right, y2: sy(t), stroke: "#eef0f3" }));
      const label = svgElement("text", { x: left - 6, y: sy(t) + 4, "text-anchor": "end", fill: "#6b7280", "font-size": 11 });
      label.textContent = formatTick(t, yStep);
      svg.append(label);
    }
    for (const t of niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
      const label = svgElement("text", { x: sx(t), y: height - 8, "text-anchor": "middle", fill: "#6b7280", "font-size": 11 });
      label.textContent = formatTick(t);
      svg.append(label);
    }
    this.legend.textContent = "";
    for (const [name, s] of this.series) {
      const points = s.points.filter((p) => Number.isFinite(p[1]));
      const line = svgElement("polyline", {
        points: points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
        fill: "none", stroke: s.color, "stroke-width": 2, "vector-effect": "non-scaling-stroke",
        "data-series": name, "data-points": points.length,
      });
      svg.append(line);
      if (points.length === 1 || points.length <= 40) {
        for (const p of points) svg.append(svgElement("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: s.color, "data-series": name }));
      }
      const key = document.createElement("span");
      key.style.setProperty("--c", s.color);
      const last = points.length ? points[points.length - 1][1] : null;
      key.textContent = last === null ? name : `${name} ${formatValue(last)}`;
      this.legend.append(key);
    }
  }
}

window.LineChart = LineChart;
