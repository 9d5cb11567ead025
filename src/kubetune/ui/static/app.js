// The kubetune dashboard: one page, four views (jobs, job, runtimes, compare) over the JSON API
// (/api/openapi.json). Live views follow server-sent events; nothing reloads the page.
"use strict";

const TOKEN_KEY = "kubetune-token";
const params = new URLSearchParams(location.search);
if (params.get("token")) {
  sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  history.replaceState(null, "", location.pathname + location.hash); // keep the token out of the address bar
}
const TOKEN = sessionStorage.getItem(TOKEN_KEY) || "";
const view = document.getElementById("view");
let closeView = () => {};

// ---- helpers ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

async function api(path, options) {
  const response = await fetch(path, { ...(options || {}), headers: { "X-Kubetune-Token": TOKEN } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function stream(path, handlers) {
  const sep = path.includes("?") ? "&" : "?";
  const source = new EventSource(`${path}${sep}token=${encodeURIComponent(TOKEN)}`);
  const live = document.getElementById("live");
  source.onopen = () => live.classList.add("on");
  source.onerror = () => live.classList.remove("on");
  for (const [event, handler] of Object.entries(handlers)) {
    source.addEventListener(event, (message) => handler(JSON.parse(message.data)));
  }
  return source;
}

function toast(text) {
  const node = document.getElementById("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 4000);
}

const fmt = {
  num: (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits)),
  int: (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString()),
  duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
  },
  size(bytes) {
    if (bytes === null || bytes === undefined) return "unknown size";
    let size = bytes; const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
    while (size >= 1024 && i < units.length - 1) { size /= 1024; i++; }
    return i ? `${size.toFixed(1)} ${units[i]}` : `${size} B`;
  },
};

const badge = (status) => el("span", { class: `badge ${status}` }, status);
const ACTIVE = new Set(["Created", "Initializing", "Running", "Suspended"]);

function stepCell(row) {
  if (row.step === null) return el("td", { class: "muted" }, row.phase || "–");
  const share = row.total_steps ? (100 * row.step) / row.total_steps : 0;
  return el("td", { class: "num" }, `${row.step}/${row.total_steps}`, el("div", { class: "bar" }, el("div", { style: `width:${share}%` })));
}

// ---- jobs ------------------------------------------------------------------------------------

function jobsView() {
  const picked = new Set();
  const compare = el("button", { disabled: true, onclick: () => { location.hash = `#/compare/${[...picked].join(",")}`; } }, "Compare selected");
  const body = el("tbody");
  view.replaceChildren(
    el("h1", {}, "Jobs", el("div", { class: "actions" }, compare)),
    el("table", { id: "jobs" },
      el("thead", {}, el("tr", {}, ["", "Name", "Status", "Step", "Loss", "Eval loss", "Tokens/s", "ETA", "Reason"].map((h) => el("th", {}, h)))),
      body),
  );
  const source = stream("/api/stream/jobs", {
    jobs(rows) {
      body.replaceChildren(...rows.slice().reverse().map((row) => el("tr", { "data-job": row.name },
        el("td", {}, el("input", { type: "checkbox", checked: picked.has(row.name), onchange(e) {
          e.target.checked ? picked.add(row.name) : picked.delete(row.name);
          compare.disabled = picked.size < 1;
        } })),
        el("td", {}, el("a", { href: `#/job/${row.name}` }, row.name)),
        el("td", {}, badge(row.status)),
        stepCell(row),
        el("td", { class: "num" }, fmt.num(row.loss, 4)),
        el("td", { class: "num" }, fmt.num(row.eval_loss, 4)),
        el("td", { class: "num" }, fmt.int(row.tokens_per_s)),
        el("td", { class: "num" }, ACTIVE.has(row.status) ? fmt.duration(row.eta_s) : "–"),
        el("td", { title: row.message || "" }, ACTIVE.has(row.status) && row.status !== "Suspended" ? "" : (row.reason || "")),
      )));
      if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No jobs yet: `kubetune train -f job.yaml`.")));
    },
  });
  return () => source.close();
}

// ---- one job ---------------------------------------------------------------------------------

const CHARTS = [
  ["loss", "Loss", ["loss", "eval_loss"]],
  ["lr", "Learning rate", ["lr"]],
  ["grad_norm", "Gradient norm", ["grad_norm"]],
  ["tokens_per_s", "Tokens/s", ["tokens_per_s"]],
];

function jobView(name) {
  const title = el("span", {}, name);
  const status = el("span");
  const progress = el("span", { class: "muted" });
  const buttons = {
    suspend: el("button", { onclick: () => act("suspend", "Suspend", `Suspend ${name}? It checkpoints and stops; Resume continues it.`) }, "Suspend"),
    resume: el("button", { onclick: () => act("resume", "Resume") }, "Resume"),
    cancel: el("button", { class: "danger", id: "cancel", onclick: () => act("cancel", "Cancel", `Cancel ${name}? It stops without a checkpoint.`) }, "Cancel"),
    delete: el("button", { class: "danger", id: "delete", onclick: () => removeJob() }, "Delete"),
  };
  const charts = {};
  const grid = el("div", { class: "grid charts" });
  for (const [id, label] of CHARTS) {
    const box = el("div", { class: "card", id: `chart-${id}` });
    grid.append(box);
    charts[id] = new LineChart(box, { title: label });
  }
  const details = el("div", { class: "grid" });
  const events = el("tbody");
  const stepSelect = el("select", { onchange: () => { closeStream(); openStream(); } });
  const follow = el("input", { type: "checkbox", checked: true });
  const logs = el("pre", { class: "logs", id: "logs" });
  view.replaceChildren(
    el("h1", {}, title, status, progress, el("div", { class: "actions" }, Object.values(buttons))),
    grid,
    details,
    el("h2", {}, "Logs"),
    el("div", { class: "toolbar" }, el("label", {}, "step ", stepSelect), el("label", {}, follow, " follow")),
    logs,
    el("h2", {}, "Events"),
    el("table", {}, el("thead", {}, el("tr", {}, ["Time", "Type", "Reason", "Message"].map((h) => el("th", {}, h)))), events),
  );

  function plot(records, reset) {
    for (const [id, , keys] of CHARTS) {
      for (const key of keys) {
        const points = records.filter((r) => r[key] !== null && r[key] !== undefined).map((r) => [r.step, r[key]]);
        if (reset) charts[id].setSeries(key, points);
        else if (points.length || !charts[id].series.has(key)) charts[id].addPoints(key, points);
      }
    }
  }

  function showLines(lines, reset) {
    if (reset) logs.textContent = "";
    logs.append(lines.join("\n") + (lines.length ? "\n" : ""));
    if (follow.checked) logs.scrollTop = logs.scrollHeight;
  }

  async function refreshDetail() {
    let job;
    try { job = await api(`/api/jobs/${name}`); } catch (err) { toast(err.message); return; }
    status.replaceChildren(badge(job.status));
    const active = ACTIVE.has(job.status);
    buttons.cancel.disabled = !active;
    buttons.suspend.disabled = !["Running", "Initializing"].includes(job.status);
    buttons.resume.disabled = !["Suspended", "Failed", "Cancelled"].includes(job.status);
    progress.textContent = job.step === null ? (job.phase || "") :
      `step ${job.step}/${job.total_steps}` + (active ? ` · eta ${fmt.duration(job.eta_s)}` : "");
    if (stepSelect.options.length === 0) {
      for (const step of job.steps.map((s) => s.name).concat(["supervisor"])) stepSelect.append(el("option", { value: step }, step));
      const worker = job.steps.find((s) => s.name.startsWith("node-"));
      stepSelect.value = worker ? worker.name : "supervisor";
    }
    const kv = (pairs) => el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    details.replaceChildren(
      el("div", { class: "card" }, el("h2", {}, "Job"), kv([
        ["Status", job.reason ? `${job.status} (${job.reason})` : job.status], ["Message", job.message],
        ["Kind", job.trainer_kind + (job.runtime ? `, runtime ${job.runtime}` : "")], ["Nodes", job.nodes],
        ["Created", job.created_at], ["Started", job.started_at], ["Finished", job.finished_at],
        ["Steps", job.steps.map((s) => `${s.name} ${s.status}${s.exit_code !== null ? ` (exit ${s.exit_code})` : ""}`).join(", ")],
      ])),
      el("div", { class: "card", id: "outputs" }, el("h2", {}, "Outputs"), kv([
        ["Run dir", job.run_dir], ["Output dir", job.output_dir],
        ["Stored", `${job.outputs.join(", ") || "none yet"} (${fmt.size(job.outputs_size_bytes)})`],
        ...Object.entries(job.exports),
      ])),
      el("div", { class: "card", id: "config" }, el("h2", {}, "Resolved config"),
        job.config ? el("pre", {}, JSON.stringify(job.config, null, 2)) : el("p", { class: "muted" }, "not available (yet) from this backend")),
    );
    events.replaceChildren(...job.events.map((e) => el("tr", {}, el("td", {}, e.time.replace("T", " ").slice(0, 19)), el("td", {}, e.type), el("td", {}, e.reason), el("td", {}, e.message))));
  }

  async function act(action, label, question) {
    if (question && !confirm(question)) return;
    try { const result = await api(`/api/jobs/${name}/${action}`, { method: "POST" }); toast(`${label}: ${name} is ${result.status}`); }
    catch (err) { toast(`${label} failed: ${err.message}`); }
    refreshDetail();
  }

  async function removeJob() {
    const purge = confirm(`Delete ${name}? Its record and logs go.\n\nOK: keep its outputs (trained model, checkpoints). Cancel: decide about the outputs next.`)
      ? false : confirm(`Delete ${name} AND remove its outputs for good?`) ? true : null;
    if (purge === null) return;
    try { await api(`/api/jobs/${name}?purge=${purge}`, { method: "DELETE" }); toast(`deleted ${name}`); location.hash = "#/"; }
    catch (err) { toast(`Delete failed: ${err.message}`); }
  }

  let source = null;
  function openStream() {
    const step = stepSelect.value || "node-0";
    source = stream(`/api/jobs/${name}/stream?step=${encodeURIComponent(step)}`, {
      job: () => refreshDetail(),
      append: (records) => plot(records, false),
      reset: (records) => plot(records, true),
      log: (lines) => showLines(lines, false),
      "log-reset": (lines) => showLines(lines, true),
      end: () => { closeStream(); refreshDetail(); },
      gone: () => { closeStream(); toast(`${name} was deleted`); },
    });
  }
  function closeStream() { if (source) source.close(); source = null; logs.textContent = ""; }
  refreshDetail().then(() => { for (const c of Object.values(charts)) c.clear(); openStream(); });
  return () => { if (source) source.close(); };
}

// ---- runtimes --------------------------------------------------------------------------------

function runtimesView() {
  const body = el("tbody", {}, el("tr", {}, el("td", { colspan: 7, class: "muted" }, "Planning memory for each runtime…")));
  view.replaceChildren(
    el("h1", {}, "Runtimes"),
    el("table", { id: "runtimes" }, el("thead", {}, el("tr", {}, ["Name", "Family", "Method", "Model", "Nodes", "GPUs/node", "Plan per GPU"].map((h) => el("th", {}, h)))), body),
  );
  api("/api/runtimes").then((rows) => {
    body.replaceChildren(...rows.map((r) => {
      const lines = r.plan.split("\n");
      const summary = (lines[1] || lines[0]).split(": ").pop().trim();
      return el("tr", { "data-runtime": r.name },
        el("td", { title: r.description }, r.name), el("td", {}, r.family || "–"), el("td", {}, r.method),
        el("td", {}, r.model_uri || "–"), el("td", { class: "num" }, `${r.num_nodes}x${r.procs_per_node}`),
        el("td", { class: "num" }, r.gpus_per_node), el("td", {}, el("details", {}, el("summary", {}, summary), el("pre", { class: "plan" }, r.plan))));
    }));
    if (!rows.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "This backend offers no runtimes.")));
  }, (err) => toast(err.message));
  return () => {};
}

// ---- compare ---------------------------------------------------------------------------------

function compareView(names) {
  const chartBox = el("div", { class: "card", id: "chart-compare" });
  const picker = el("div", { class: "toolbar" });
  view.replaceChildren(el("h1", {}, "Compare loss curves"), picker, chartBox);
  const chart = new LineChart(chartBox, { title: "Training loss (dashed colours: eval loss)" });
  let chosen = new Set(names);
  async function load() {
    const jobs = await api("/api/jobs").catch(() => []);
    picker.replaceChildren(...jobs.map((job) => el("label", {}, el("input", { type: "checkbox", checked: chosen.has(job.name), onchange(e) {
      e.target.checked ? chosen.add(job.name) : chosen.delete(job.name);
      history.replaceState(null, "", `#/compare/${[...chosen].join(",")}`);
      draw();
    } }), ` ${job.name} `)));
  }
  async function draw() {
    const series = await Promise.all([...chosen].map(async (name) => [name, await api(`/api/jobs/${name}/metrics`).catch(() => [])]));
    chart.series.clear();
    for (const [name, records] of series) {
      chart.setSeries(name, records.filter((r) => r.loss !== null).map((r) => [r.step, r.loss]));
      const evals = records.filter((r) => r.eval_loss !== null).map((r) => [r.step, r.eval_loss]);
      if (evals.length) chart.setSeries(`${name} eval`, evals);
    }
    chart.render();
  }
  load().then(draw);
  const timer = setInterval(draw, 3000);
  return () => clearInterval(timer);
}

// ---- routing ---------------------------------------------------------------------------------

function route() {
  closeView();
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, arg] = [hash.split("/")[0], hash.split("/").slice(1).join("/")];
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("active", link.dataset.nav === (page || "jobs") || (page === "job" && link.dataset.nav === "jobs"));
  if (!TOKEN) {
    view.replaceChildren(el("p", {}, "Open the URL `kubetune ui` printed (it carries the access token)."));
    closeView = () => {};
    return;
  }
  if (page === "job" && arg) closeView = jobView(decodeURIComponent(arg));
  else if (page === "runtimes") closeView = runtimesView();
  else if (page === "compare") closeView = compareView(arg ? arg.split(",").filter(Boolean) : []);
  else closeView = jobsView();
}

window.addEventListener("hashchange", route);
route();
