// The browser view of one question and the model's answer: node series, graph, question,
// reasoning, answer, and whether it is right. Two modes:
//  * served by `strl serve` (GET /view): pick an eval suite example or paste a question, ask
//    the model through POST v1/reason;
//  * embedded in the HTML `strl eval` writes: window.STRL_RECORDS holds the evaluated
//    questions and answers, browsed with previous / next.
// Every text from a request or a model goes in through textContent, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22"];

function el(tag, attrs = {}, text = null, ns = null) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}
const $ = (id) => document.getElementById(id);

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// ---- node series: one small panel per node ----------------------------------------
function drawSeries(q) {
  const svg = $("series");
  svg.replaceChildren();
  const n = q.series.length, steps = q.series[0].length;
  const W = 640, panel = n > 6 ? 44 : 70, gap = 6, left = 96, right = 8;
  svg.setAttribute("viewBox", `0 0 ${W} ${n * (panel + gap) + 16}`);
  svg.setAttribute("width", "100%");
  q.series.forEach((row, i) => {
    const top = i * (panel + gap);
    const lo = Math.min(...row), hi = Math.max(...row), span = hi - lo || 1;
    const x = (t) => left + (t / Math.max(1, steps - 1)) * (W - left - right);
    const y = (v) => top + panel - 4 - ((v - lo) / span) * (panel - 8);
    svg.append(el("rect", {x: left, y: top, width: W - left - right, height: panel,
                           fill: "#fafbfc", stroke: "#e1e4e8"}, null, SVG));
    const name = q.node_names && q.node_names[i] ? ` ${q.node_names[i]}` : "";
    svg.append(el("text", {x: 4, y: top + 14}, `Node ${i}`, SVG));
    svg.append(el("text", {x: 4, y: top + 28, "font-size": 10}, name.slice(0, 16), SVG));
    svg.append(el("text", {x: 4, y: top + panel - 4, "font-size": 9},
                  `${lo.toPrecision(4)}–${hi.toPrecision(4)}`, SVG));
    const d = row.map((v, t) => `${t ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    svg.append(el("path", {d, fill: "none", stroke: COLORS[i % COLORS.length],
                           "stroke-width": 1.4, class: "series-line", "data-node": i}, null, SVG));
  });
  svg.append(el("text", {x: left, y: n * (panel + gap) + 12},
                `${steps} steps per node`, SVG));
}

// ---- graph: nodes on a circle, arrows with their lags ------------------------------
function drawGraph(q) {
  const svg = $("graph");
  svg.replaceChildren();
  const n = q.series.length, S = 320, R = 120, c = S / 2, r = 15;
  svg.setAttribute("viewBox", `0 0 ${S} ${S}`);
  svg.setAttribute("width", "100%");
  const defs = el("defs", {}, null, SVG);
  const marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
                               markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"},
                    null, SVG);
  marker.append(el("path", {d: "M0,0 L10,5 L0,10 z", fill: "#5b6675"}, null, SVG));
  defs.append(marker);
  svg.append(defs);
  const pos = [...Array(n).keys()].map((i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    return [c + R * Math.cos(a), c + R * Math.sin(a)];
  });
  for (const e of q.edges || []) {
    const [u, v] = e, lag = e.length > 2 ? e[2] : null;
    const [x1, y1] = pos[u], [x2, y2] = pos[v];
    const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1;
    const sx = x1 + (dx / len) * r, sy = y1 + (dy / len) * r;
    const ex = x2 - (dx / len) * (r + 2), ey = y2 - (dy / len) * (r + 2);
    svg.append(el("line", {x1: sx, y1: sy, x2: ex, y2: ey, stroke: "#5b6675",
                           "stroke-width": 1.3, "marker-end": "url(#arrow)", class: "edge"},
                  null, SVG));
    if (lag !== null) {
      svg.append(el("text", {x: (sx + ex) / 2 + 3, y: (sy + ey) / 2 - 3, class: "lag"},
                    `lag ${lag}`, SVG));
    }
  }
  if (!(q.edges || []).length) {
    svg.append(el("text", {x: 8, y: 16}, "no graph given (graph-free prompt)", SVG));
  }
  pos.forEach(([x, y], i) => {
    svg.append(el("circle", {cx: x, cy: y, r, fill: COLORS[i % COLORS.length],
                             "fill-opacity": 0.2, stroke: COLORS[i % COLORS.length],
                             class: "node"}, null, SVG));
    svg.append(el("text", {x, y: y + 4, "text-anchor": "middle"}, String(i), SVG));
  });
}

// ---- question and answer -----------------------------------------------------------
function showQuestion(q, meta) {
  $("meta").textContent = meta || "";
  $("question").textContent = q.question;
  const ol = $("options");
  ol.replaceChildren();
  (q.options || []).forEach((o, i) => {
    const li = el("li", {"data-letter": LETTERS[i]}, o);
    if (q.answer === LETTERS[i]) li.classList.add("gold");
    ol.append(li);
  });
  if (q.horizon) ol.append(el("p", {}, `Forecast the next ${q.horizon} steps.`));
  const gold = q.answer === undefined ? "-" : (Array.isArray(q.answer) ? JSON.stringify(q.answer)
                                                 : String(q.answer));
  $("gold").textContent = gold;
  $("graph-note").textContent = q.with_graph === false ? "(not shown to the model)" : "";
  drawSeries(q);
  drawGraph(q);
  showAnswer(null);
}

function verdictOf(r) {
  if (!r.valid) return [`invalid (${r.invalid_reason})`, "invalid"];
  if (r.correct === true) return ["correct", "correct"];
  if (r.correct === false) return ["wrong", "wrong"];
  if (r.mae !== null && r.mae !== undefined) return [`MAE ${r.mae.toPrecision(4)}`, "unknown"];
  return ["valid (no gold answer)", "unknown"];
}

function answerText(a) {
  return a === null || a === undefined ? "(none)" : Array.isArray(a) ? JSON.stringify(a) : String(a);
}

function showNoGraph(r) {
  $("nograph").hidden = !r;
  if (!r) return;
  const [text, cls] = verdictOf(r);
  $("nograph-answer").textContent = answerText(r.answer);
  $("nograph-verdict").textContent = text;
  $("nograph-verdict").className = `badge ${cls}`;
}

function showAnswer(r) {
  const v = $("verdict");
  if (r === null) {
    $("answer").textContent = "-";
    $("reasoning").textContent = "";
    $("completion").textContent = "";
    v.textContent = "not asked yet";
    v.className = "badge unknown";
    return;
  }
  const a = r.answer;
  $("answer").textContent = answerText(a);
  $("reasoning").textContent = r.reasoning || "(no reasoning)";
  $("completion").textContent = r.completion || "";
  for (const li of $("options").children) {
    li.classList.toggle("picked", li.dataset.letter === a);
  }
  const [text, cls] = verdictOf(r);
  v.textContent = text;
  v.className = `badge ${cls}`;
}

// ---- served mode -------------------------------------------------------------------
// A server started with an API key answers 401 without it: ask once, keep it for the tab.
async function api(path, body, asked = false) {
  const headers = body === undefined ? {} : {"Content-Type": "application/json"};
  const key = sessionStorage.getItem("strl-key");
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(path, body === undefined ? {headers} : {
    method: "POST", headers, body: JSON.stringify(body)});
  if (res.status === 401 && !asked) {
    const given = window.prompt("This server needs its API key:");
    if (given) {
      sessionStorage.setItem("strl-key", given.trim());
      return api(path, body, true);
    }
  }
  const data = await res.json();
  if (!res.ok) throw new Error(data.error ? data.error.message : `HTTP ${res.status}`);
  return data;
}

let current = null;

function readPasted() {
  const text = $("paste").value.trim();
  if (!text) return current;
  let req;
  try { req = JSON.parse(text); } catch (e) { throw new Error(`not JSON: ${e.message}`); }
  return req;
}

async function ask() {
  let req;
  try { req = readPasted(); } catch (e) { status(e.message, true); return; }
  if (!req) { status("load an example or paste a question first", true); return; }
  status("asking the model ...");
  $("ask").disabled = true;
  try {
    const r = await api("v1/reason", req);
    current = req;
    showQuestion(r.question, `${r.kind}${r.task ? " · " + r.task : ""}`);
    showAnswer(r);
    status(`answered in ${r.usage.completion_tokens} tokens (prompt ${r.usage.prompt_tokens})`);
  } catch (e) {
    status(e.message, true);
  } finally {
    $("ask").disabled = false;
  }
}

async function loadExample(id) {
  status("loading ...");
  try {
    const ex = await api(`v1/examples/${id}`);
    current = ex.request;
    $("paste").value = "";
    showQuestion(ex.request, `${ex.split.toUpperCase()} · ${ex.task} · ${ex.nodes} nodes · ${ex.domain}`);
    status(`example ${ex.id}`);
  } catch (e) { status(e.message, true); }
}

async function served() {
  const pick = el("select", {id: "example"});
  const ask_ = el("button", {id: "ask"}, "Ask the model");
  $("controls").append(pick, " ", ask_);
  $("paste-box").hidden = false;
  ask_.addEventListener("click", ask);
  pick.addEventListener("change", () => loadExample(pick.value));
  try {
    const list = await api("v1/examples");
    for (const e of list.data) {
      pick.append(el("option", {value: e.id}, `${e.split} · ${e.task} · ${e.nodes} nodes`));
    }
    await loadExample(list.data[0].id);
  } catch (e) { status(e.message, true); }
}

// ---- embedded mode (strl eval) -----------------------------------------------------
function embedded(records) {
  let i = 0;
  const prev = el("button", {id: "prev"}, "◀"), next = el("button", {id: "next"}, "▶");
  const pick = el("select", {id: "record"});
  records.forEach((r, k) => pick.append(el("option", {value: k},
    `${r.id} · ${r.reading.valid ? (r.reading.correct === false ? "wrong" : r.reading.correct ? "correct" : "valid") : "invalid"}`)));
  $("controls").append(prev, " ", pick, " ", next);
  const show = () => {
    const r = records[i];
    pick.value = String(i);
    showQuestion(r.question, r.meta || r.id);
    showAnswer(r.reading);
    showNoGraph(r.reading_no_graph);
    status(`${i + 1} of ${records.length}`);
  };
  prev.addEventListener("click", () => { i = (i + records.length - 1) % records.length; show(); });
  next.addEventListener("click", () => { i = (i + 1) % records.length; show(); });
  pick.addEventListener("change", () => { i = Number(pick.value); show(); });
  show();
}

if (window.STRL_RECORDS) embedded(window.STRL_RECORDS); else served();
