// envleads dashboard: polls the JSON API and draws the list, the detail, the charts and the map.
// Every piece of lead data is inserted with textContent or as an SVG attribute, never as HTML:
// summaries are citizen-written text.
"use strict";

const POLL_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";
const TIER_COLOURS = { urgent: "#c0392b", high: "#e67e22", normal: "#2e86c1", low: "#95a5a6" };
const TIER_NAMES = { urgent: "紧急 urgent", high: "高 high", normal: "中 normal", low: "低 low" };
const TIER_SHORT = { urgent: "紧急", high: "高", normal: "中", low: "低" };
const TYPE_SHORT = {
  air: "大气", water: "水", noise: "噪声", solid_waste: "固废", soil: "土壤", radiation: "辐射", ecological: "生态", other: "其他",
};
const TYPE_NAMES = {
  air: "大气 air", water: "水 water", noise: "噪声 noise", solid_waste: "固废 solid waste",
  soil: "土壤 soil", radiation: "辐射 radiation", ecological: "生态 ecological", other: "其他 other",
};
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac"];
// Map projection: equirectangular, longitudes shrunk by cos(35°) so China keeps its shape.
const MAP = { lonMin: 73, lonMax: 135.5, latMin: 15.5, latMax: 54, kx: Math.cos(35 * Math.PI / 180), scale: 10 };

const state = {
  meta: null, etag: null, selected: null, selectedRank: null, lastScores: new Map(), firstLoad: true, timer: null, request: 0,
};

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (parent) parent.appendChild(node);
  return node;
}

function svgTitle(node, text) {
  svgEl("title", {}, node).textContent = text;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function typeName(type) {
  return TYPE_NAMES[type] || type;
}

// ---- filters ------------------------------------------------------------------------------------

function filterParams() {
  const params = new URLSearchParams();
  const type = document.getElementById("filter-type").value;
  const region = document.getElementById("filter-region").value.trim();
  const minScore = document.getElementById("filter-min-score").value.trim();
  const campaign = document.getElementById("filter-campaign").value;
  if (type) params.set("type", type);
  if (region) params.set("region", region);
  if (minScore) params.set("min_score", minScore);
  if (campaign) params.set("campaign", campaign);
  if (document.getElementById("filter-overdue").checked) params.set("overdue", "1");
  return params;
}

function filtersFromHash() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  document.getElementById("filter-type").value = params.get("type") || "";
  document.getElementById("filter-region").value = params.get("region") || "";
  document.getElementById("filter-min-score").value = params.get("min_score") || "";
  document.getElementById("filter-campaign").value = params.get("campaign") || "";
  document.getElementById("filter-overdue").checked = params.get("overdue") === "1";
}

function onFiltersChanged() {
  const hash = filterParams().toString();
  history.replaceState(null, "", hash ? "#" + hash : window.location.pathname);
  state.etag = null;
  refresh();
}

function setupFilters(meta) {
  const typeSelect = document.getElementById("filter-type");
  for (const type of meta.types) typeSelect.appendChild(el("option", { value: type }, typeName(type)));
  const campaignSelect = document.getElementById("filter-campaign");
  for (const [id, name] of Object.entries(meta.campaigns)) {
    campaignSelect.appendChild(el("option", { value: id }, name));
  }
  const regions = document.getElementById("region-choices");
  for (const province of meta.basemap.provinces) regions.appendChild(el("option", { value: province.name }));
  filtersFromHash();
  const form = document.getElementById("filters");
  form.addEventListener("change", onFiltersChanged);
  form.addEventListener("submit", (event) => { event.preventDefault(); onFiltersChanged(); });
  document.getElementById("filter-region").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); onFiltersChanged(); }
  });
  document.getElementById("filter-reset").addEventListener("click", () => {
    form.reset();
    onFiltersChanged();
  });
}

// ---- data ---------------------------------------------------------------------------------------

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function refresh() {
  clearTimeout(state.timer);
  const request = ++state.request;
  const params = filterParams();
  if (state.etag) params.set("known", state.etag);
  try {
    const payload = await getJson("/api/leads?" + params.toString());
    if (request !== state.request) return;  // the filters changed meanwhile: a newer request is under way
    if (!payload.unchanged) {
      state.etag = payload.etag;
      render(payload);
    }
    showStatus(payload.status, null);
  } catch (error) {
    if (request !== state.request) return;
    showStatus(null, error.message);
  }
  state.timer = setTimeout(refresh, POLL_MS);
}

function showStatus(status, error) {
  const node = document.getElementById("status");
  clear(node);
  node.className = "status";
  if (error || (status && status.error)) {
    node.classList.add("error");
    node.textContent = "⚠ " + (error || status.error);
    return;
  }
  if (!status.version) {
    node.textContent = "读取线索中 loading leads… · " + status.source;
    return;
  }
  const updated = status.updated_at_ms ? new Date(status.updated_at_ms).toLocaleTimeString("zh-CN", { hour12: false }) : "-";
  node.appendChild(el("span", { class: "live-dot" }, "●"));
  node.appendChild(document.createTextNode(` 实时 live · ${status.source} · ${status.leads} 条 leads · 更新 updated ${updated}`));
}

function render(payload) {
  renderSummary(payload);
  renderTable(payload);
  renderMap(payload.points);
  renderChart("chart-type", payload.by_type, (name) => typeName(name), "type-bucket");
  renderChart("chart-region", payload.by_region, (name) => name, "region-bucket");
  const ids = new Set(payload.rows.map((row) => row.lead_id));
  if (!state.selected && payload.rows.length) {
    selectLead(payload.rows[0].lead_id, payload.rows[0].rank);  // show the top lead until one is picked
  } else if (state.selected && ids.has(state.selected)) {
    const row = payload.rows.find((r) => r.lead_id === state.selected);
    selectLead(state.selected, row.rank);  // it may have changed: re-read its detail
  }
  state.firstLoad = false;
}

function renderSummary(payload) {
  const node = document.getElementById("summary");
  clear(node);
  node.appendChild(el("strong", { id: "matched-count" }, payload.matched));
  node.appendChild(document.createTextNode(` / ${payload.total} 条线索 leads · `));
  node.appendChild(el("span", { class: "overdue-count" }, `${payload.overdue} 逾期 overdue`));
  for (const [tier, count] of Object.entries(payload.by_tier)) {
    const badge = el("span", { class: "tier-count" }, `${TIER_NAMES[tier] || tier} ${count}`);
    badge.style.borderColor = TIER_COLOURS[tier] || "#999";
    node.appendChild(document.createTextNode(" "));
    node.appendChild(badge);
  }
  node.appendChild(el("span", { class: "hint" }, ` · 逾期以 ${payload.now} 为准 overdue as of now`));
}

function tierBadge(tier, short) {
  const badge = el("span", { class: "tier tier-" + tier, title: tier }, (short ? TIER_SHORT : TIER_NAMES)[tier] || tier);
  return badge;
}

function renderTable(payload) {
  const body = document.querySelector("#lead-table tbody");
  clear(body);
  const scores = new Map();
  for (const row of payload.rows) {
    const tr = el("tr", { "data-lead-id": row.lead_id, "data-rank": row.rank, tabindex: "0" });
    if (row.lead_id === state.selected) tr.classList.add("selected");
    const previous = state.lastScores.get(row.lead_id);
    if (!state.firstLoad && (previous === undefined || previous !== row.score)) tr.classList.add("fresh");
    scores.set(row.lead_id, row.score);
    tr.appendChild(el("td", { class: "rank" }, row.rank));
    const tierCell = el("td");
    tierCell.appendChild(tierBadge(row.tier, true));
    tr.appendChild(tierCell);
    tr.appendChild(el("td", { class: "num score" }, row.score.toFixed(1)));
    tr.appendChild(el("td", { class: "types", title: row.pollution_types.join(", ") },
      row.pollution_types.map((t) => TYPE_SHORT[t] || t).join("、")));
    tr.appendChild(el("td", { class: "place" }, row.place));
    tr.appendChild(el("td", { class: "department" }, row.department || "-"));
    tr.appendChild(el("td", { class: "num" }, row.report_count));
    const deadline = el("td", { class: "deadline", title: row.deadline }, row.deadline ? row.deadline.slice(5, 10) : "-");
    if (row.overdue) deadline.appendChild(el("span", { class: "overdue-badge", title: "overdue" }, "逾期"));
    tr.appendChild(deadline);
    tr.appendChild(el("td", { class: "reasons" }, row.top_reasons.join(", ")));
    tr.addEventListener("click", () => selectLead(row.lead_id, row.rank));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") selectLead(row.lead_id, row.rank); });
    body.appendChild(tr);
  }
  for (const [id, score] of scores) state.lastScores.set(id, score);
  const note = document.getElementById("list-note");
  note.textContent = payload.matched > payload.rows.length
    ? `显示前 ${payload.rows.length} 条 · showing the first ${payload.rows.length} of ${payload.matched}`
    : (payload.matched ? "" : "没有符合条件的线索 · no lead matches these filters");
}

// ---- detail -------------------------------------------------------------------------------------

async function selectLead(leadId, rank) {
  state.selected = leadId;
  state.selectedRank = rank;
  for (const tr of document.querySelectorAll("#lead-table tbody tr")) {
    tr.classList.toggle("selected", tr.getAttribute("data-lead-id") === leadId);
  }
  try {
    const lead = await getJson("/api/lead?id=" + encodeURIComponent(leadId));
    if (state.selected === leadId) renderDetail(lead, rank);
  } catch (error) {
    const node = document.getElementById("detail");
    clear(node);
    node.appendChild(el("p", { class: "empty" }, "线索不可用 · lead unavailable: " + error.message));
  }
}

function addField(list, label, value) {
  list.appendChild(el("dt", {}, label));
  const dd = el("dd", {});
  if (value instanceof Node) dd.appendChild(value); else dd.textContent = value === null || value === undefined || value === "" ? "-" : String(value);
  list.appendChild(dd);
  return dd;
}

function renderDetail(lead, rank) {
  const node = document.getElementById("detail");
  clear(node);
  node.setAttribute("data-lead-id", lead.lead_id);
  const head = el("h2", { id: "detail-title" });
  head.appendChild(el("span", { class: "rank" }, "#" + rank + " "));
  head.appendChild(tierBadge(lead.tier));
  head.appendChild(document.createTextNode(` ${lead.score.toFixed(2)} 分 · ${lead.place}`));
  if (lead.overdue) head.appendChild(el("span", { class: "overdue-badge" }, "逾期 OVERDUE"));
  node.appendChild(head);
  node.appendChild(el("blockquote", { id: "detail-summary", class: "summary-text" }, lead.summary));

  const reasons = el("table", { id: "detail-reasons", class: "reasons-table" });
  reasons.appendChild(el("caption", {}, "评分依据 why this score (factor, points, detail)"));
  const maxPoints = Math.max(1, ...lead.reasons.map((r) => r.points));
  for (const reason of lead.reasons) {
    const tr = el("tr", { "data-factor": reason.factor });
    tr.appendChild(el("td", { class: "factor" }, reason.factor));
    const points = el("td", { class: "num" }, "+" + Number(reason.points).toFixed(2).replace(/\.?0+$/, ""));
    tr.appendChild(points);
    const barCell = el("td", { class: "bar-cell" });
    const bar = el("span", { class: "bar" });
    bar.style.width = Math.round(100 * reason.points / maxPoints) + "%";
    barCell.appendChild(bar);
    tr.appendChild(barCell);
    tr.appendChild(el("td", { class: "detail" }, reason.detail));
    reasons.appendChild(tr);
  }
  node.appendChild(reasons);

  const fields = el("dl", { class: "fields" });
  addField(fields, "部门 department", lead.department);
  addField(fields, "期限 deadline", lead.deadline + (lead.overdue ? " (逾期 overdue)" : ""));
  addField(fields, "类型 types", lead.pollution_types.map(typeName).join(", "));
  addField(fields, "专项 campaigns", lead.campaign_names.join("; "));
  addField(fields, "件数 reports", `${lead.report_count} (不同投诉人 distinct reporters: ${lead.distinct_reporters})`);
  addField(fields, "首次 / 最近 first / last", `${lead.first_seen} / ${lead.last_seen}`);
  addField(fields, "渠道 channel", lead.channel);
  addField(fields, "涉及 named places", lead.matter_entities.join("、"));
  addField(fields, "分派规则 routing rule", lead.routing_rule);
  const ids = el("ul", { id: "detail-complaints", class: "complaint-ids" });
  for (const id of lead.complaint_ids) ids.appendChild(el("li", {}, id));
  addField(fields, "投诉编号 complaint ids", ids);
  const joins = el("ul", { id: "detail-joins", class: "complaint-ids" });
  for (const join of lead.joins || []) {
    const why = [join.complaint_id, join.evidence, join.shared, Number(join.similarity).toFixed(2)];
    joins.appendChild(el("li", {}, why.filter((part) => part).join(" ")));
  }
  addField(fields, "合并依据 why each repeat joined (report, evidence, shared name, text similarity)", joins);
  addField(fields, "线索编号 lead id", lead.lead_id);
  node.appendChild(fields);
}

// ---- charts -------------------------------------------------------------------------------------

function renderChart(svgId, data, nameOf, bucketHintId) {
  const svg = document.getElementById(svgId);
  clear(svg);
  const width = 560, height = 190, left = 34, right = 8, top = 8, bottom = 22;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const legend = document.getElementById(svgId + "-legend");
  clear(legend);
  const bucketNames = { day: "按日 per day", week: "按周 per week", month: "按月 per month" };
  document.getElementById(bucketHintId).textContent = data.buckets.length ? bucketNames[data.bucket] : "";
  if (!data.buckets.length) {
    svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, svg).textContent = "无数据 no data";
    return;
  }
  const n = data.buckets.length;
  const totals = data.buckets.map((_, i) => data.series.reduce((sum, s) => sum + s.counts[i], 0));
  const maxTotal = Math.max(1, ...totals);
  const plotW = width - left - right, plotH = height - top - bottom;
  const step = plotW / n, barW = Math.max(1, step * 0.8);
  const y = (value) => top + plotH - (value / maxTotal) * plotH;
  for (const tick of [0, Math.ceil(maxTotal / 2), maxTotal]) {
    svgEl("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }, svg);
    svgEl("text", { x: left - 4, y: y(tick) + 3, "text-anchor": "end", class: "axis" }, svg).textContent = tick;
  }
  const base = new Array(n).fill(0);
  data.series.forEach((series, s) => {
    const colour = PALETTE[s % PALETTE.length];
    series.counts.forEach((count, i) => {
      if (!count) return;
      const rect = svgEl("rect", {
        x: left + i * step + (step - barW) / 2, y: y(base[i] + count), width: barW,
        height: Math.max(0.5, y(base[i]) - y(base[i] + count)), fill: colour,
      }, svg);
      svgTitle(rect, `${data.buckets[i]} · ${nameOf(series.name)}: ${count}`);
      base[i] += count;
    });
    const item = el("span", { class: "legend-item" });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(`${nameOf(series.name)} ${series.counts.reduce((a, b) => a + b, 0)}`));
    legend.appendChild(item);
  });
  svgEl("text", { x: left, y: height - 6, class: "axis" }, svg).textContent = data.buckets[0];
  if (n > 1) {
    svgEl("text", { x: width - right, y: height - 6, "text-anchor": "end", class: "axis" }, svg).textContent = data.buckets[n - 1];
  }
}

// ---- map ----------------------------------------------------------------------------------------

function project(lon, lat) {
  return [(lon - MAP.lonMin) * MAP.kx * MAP.scale, (MAP.latMax - lat) * MAP.scale];
}

function drawBasemap(basemap) {
  const svg = document.getElementById("map");
  const width = (MAP.lonMax - MAP.lonMin) * MAP.kx * MAP.scale, height = (MAP.latMax - MAP.latMin) * MAP.scale;
  svg.setAttribute("viewBox", `0 0 ${width.toFixed(0)} ${height.toFixed(0)}`);
  const background = svgEl("g", { id: "basemap" }, svg);
  for (const [lon, lat] of basemap.counties) {
    const [x, y] = project(lon, lat);
    svgEl("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 1.1, class: "county-dot" }, background);
  }
  for (const province of basemap.provinces) {
    const [x, y] = project(province.lon, province.lat);
    svgEl("text", { x: x.toFixed(1), y: y.toFixed(1), class: "province-label", "text-anchor": "middle" }, background)
      .textContent = province.name;
  }
  svgEl("g", { id: "lead-points" }, svg);
  const legend = document.getElementById("map-legend");
  for (const tier of state.meta.tiers) {
    const item = el("span", { class: "legend-item" });
    const swatch = el("span", { class: "swatch round" });
    swatch.style.background = TIER_COLOURS[tier];
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(TIER_NAMES[tier]));
    legend.appendChild(item);
  }
  const ring = el("span", { class: "legend-item" });
  ring.appendChild(el("span", { class: "swatch round ring" }));
  ring.appendChild(document.createTextNode("有逾期 has overdue · 圆越大线索越多 bigger = more leads"));
  legend.appendChild(ring);
}

function renderMap(points) {
  const layer = document.getElementById("lead-points");
  if (!layer) return;
  clear(layer);
  // Largest first, so small points stay clickable on top of big ones.
  const ordered = [...points].sort((a, b) => b.count - a.count);
  for (const point of ordered) {
    const [x, y] = project(point.lon, point.lat);
    const circle = svgEl("circle", {
      cx: x.toFixed(1), cy: y.toFixed(1), r: (2.5 + 2 * Math.sqrt(point.count)).toFixed(1),
      fill: TIER_COLOURS[point.tier] || "#777", class: "lead-point" + (point.overdue ? " has-overdue" : ""),
      "data-adcode": point.adcode,
    }, layer);
    svgTitle(circle, `${point.name}: ${point.count} 条 leads, ${point.overdue} 逾期 overdue (最高 top: ${point.tier})`);
    circle.addEventListener("click", () => {
      document.getElementById("filter-region").value = point.adcode;
      onFiltersChanged();
    });
  }
}

// ---- start --------------------------------------------------------------------------------------

async function start() {
  try {
    state.meta = await getJson("/api/meta");
  } catch (error) {
    showStatus(null, error.message);
    setTimeout(start, POLL_MS);
    return;
  }
  setupFilters(state.meta);
  drawBasemap(state.meta.basemap);
  window.addEventListener("hashchange", () => { filtersFromHash(); state.etag = null; refresh(); });
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
