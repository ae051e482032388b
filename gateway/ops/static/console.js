// The migration console: reads GET /admin/console/data every few seconds and acts through the
// admin API. No framework and no build: the DOM is updated in place, so focus, open details and
// the user's inputs survive every refresh. Text from the gateway is only ever set as text.
"use strict";

(() => {
  const ROOT = document.documentElement.dataset.root || "";
  const TOKEN_KEY = "gateway-admin-token";
  const IMPLS = ["legacy", "async"];
  const ACTIVE_PLAN = ["running", "paused"];
  const SVG = "http://www.w3.org/2000/svg";
  const SHORTEST_SPAN_SECONDS = 60;
  const REFRESH_MS = { shortest: 1000, longest: 5000, first: 3000 };
  const FIRST_DIRECTION = { rank: 1, route: 1, impls: 1, mode: 1 }; // others: largest first
  const COLUMNS = ["rank", "route", "impls", "mode", "rps", "legacy", "async", "thread", "db", "match", "blocked", "chart"];
  const NUMERIC_COLUMNS = new Set(["rank", "rps", "legacy", "async", "thread", "db", "match", "blocked"]);
  const REFUSALS = {
    401: "Refused (401): the admin token is missing or not valid.",
    403: "Refused (403): this token may not do that.",
    404: "Refused (404): no such route or plan.",
    409: "Refused (409): this conflicts with the route's or the plan's current state.",
    422: "Refused (422): the request is not valid.",
    503: "Not done (503): the gateway cannot reach its database; try again shortly.",
  };

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    data: null,
    sortKey: "rank",
    direction: 1,
    selected: null,
    timer: null,
    rows: new Map(),
    shown: {},
    openMismatches: new Set(),
    killOpener: null,
  };

  const byId = (id) => document.getElementById(id);

  function element(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined && text !== null) made.textContent = String(text);
    return made;
  }

  function svgElement(tag, attributes) {
    const made = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
    return made;
  }

  // ---- formatting -------------------------------------------------------------------------

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const fixed = (value, digits) => (isNumber(value) ? value.toFixed(digits) : "–");
  const share = (value) => (isNumber(value) ? `${Math.round(value * 100)} %` : "–");

  function latency(stats) {
    if (!stats) return "–";
    return `${fixed(stats.p50_ms, 1)} / ${fixed(stats.p95_ms, 1)}`;
  }

  function clock(at) {
    const date = new Date(typeof at === "number" ? at * 1000 : at);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function seconds(value) {
    if (value >= 3600 && value % 3600 === 0) return `${value / 3600} h`;
    if (value >= 60 && value % 60 === 0) return `${value / 60} min`;
    return `${Math.round(value * 10) / 10} s`;
  }

  // A duration in whole minutes, or whole seconds when `scale` (default: itself) is under 2 min.
  function roughly(value, scale = value) {
    return scale >= 120 ? `${Math.round(value / 60)} min` : `${Math.round(value)} s`;
  }

  function modeText(route) {
    if (route.mode === "canary") return `canary ${route.percent} %`;
    if (route.mode === "shadow") {
      const sampled = route.sample < 100 ? `, ${route.sample} % sampled` : "";
      const how = route.calibrating ? "calibrating" : `${route.primary} answers`;
      return `shadow (${how}${sampled})`;
    }
    return route.mode;
  }

  function planText(plan) {
    if (!plan) return "";
    const step = `step ${plan.step + 1}/${plan.steps.length} ${plan.step_label}`;
    return `plan ${plan.id}: ${step}, ${plan.state}`;
  }

  // ---- talking to the gateway ---------------------------------------------------------------

  async function call(method, path, body) {
    const headers = { authorization: `Bearer ${state.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      const response = await fetch(ROOT + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
      let payload = null;
      try {
        payload = await response.json();
      } catch {
        payload = null;
      }
      return { ok: response.ok, status: response.status, body: payload };
    } catch {
      return { ok: false, status: 0, body: null };
    }
  }

  function explain(answer) {
    if (answer.status === 0) return "Not sent: the gateway did not answer.";
    const head = REFUSALS[answer.status] || `Failed (HTTP ${answer.status}).`;
    const error = answer.body && answer.body.error;
    let said = error ? error.message : (answer.body && answer.body.detail) || "";
    const fields = error && error.details && error.details.fields;
    if (Array.isArray(fields) && fields.length) {
      said = fields.map((field) => `${field.location}: ${field.message}`).join("; ");
    }
    return said ? `${head} The gateway says: ${said}` : head;
  }

  // Live regions are only written when what they say changes: no announcement at every refresh.
  function tell(id, text, kind) {
    const place = byId(id);
    if (place.textContent !== text) place.textContent = text;
    place.classList.toggle("refused", kind === "refused");
    place.classList.toggle("done", kind === "done");
  }

  async function act(outcomeId, method, path, body, success) {
    tell(outcomeId, "Sending…", null);
    const answer = await call(method, path, body);
    if (!answer.ok) {
      tell(outcomeId, explain(answer), "refused");
      return null;
    }
    tell(outcomeId, success(answer.body), "done");
    refresh();
    return answer.body;
  }

  // ---- refreshing ---------------------------------------------------------------------------

  function refreshDelay() {
    const every = state.data ? state.data.sampling.every_seconds * 1000 : REFRESH_MS.first;
    return Math.min(Math.max(every, REFRESH_MS.shortest), REFRESH_MS.longest);
  }

  async function refresh() {
    clearTimeout(state.timer);
    state.timer = null;
    if (!state.token) return;
    if (!document.hidden) {
      const answer = await call("GET", "/admin/console/data");
      if (answer.status === 401 || answer.status === 403) {
        refuseToken(answer);
        return;
      }
      if (answer.ok) {
        state.data = answer.body;
        tell("connection-status", "", null);
        render();
      } else {
        tell("connection-status", `${explain(answer)} Retrying.`, "refused");
      }
    }
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, refreshDelay());
  }

  function refuseToken(answer) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    tell("token-status", explain(answer), "refused");
    byId("scope").textContent = "Figures: waiting for a valid admin token.";
  }

  // ---- rendering ----------------------------------------------------------------------------

  function render() {
    const data = state.data;
    renderAccess(data.access);
    renderScope(data);
    renderProgress(data.progress);
    renderTable(data);
    renderDetail(data);
    renderEvents(data.events);
    renderMismatches(data.mismatches);
    byId("refresh-status").textContent =
      `Updated ${clock(data.generated_at)}; refreshed every ${seconds(refreshDelay() / 1000)}.` +
      (data.database === "ok" ? "" : " The database does not answer: plans, events and mismatches are missing.");
  }

  function renderAccess(access) {
    const rights = access.may_change ? "read-write" : "read-only: changes will be refused";
    tell("token-status", `Token “${access.token}” (${rights}).`, null);
  }

  function windowText(sampling) {
    if (sampling.covered_seconds > 0 && sampling.covered_seconds < sampling.window_seconds * 0.95) {
      return `last ${seconds(Math.round(sampling.covered_seconds))} (since this worker started)`;
    }
    return `last ${seconds(sampling.window_seconds)}`;
  }

  function renderScope(data) {
    const how = data.scope.source === "fleet" ? "rates over 1 min" : `sampled every ${seconds(data.sampling.every_seconds)}`;
    byId("scope").textContent = `Figures: ${data.scope.label}; ${windowText(data.sampling)}, ${how}.`;
    byId("share-window").textContent = windowText(data.sampling);
  }

  function setBar(id, value, total) {
    const bar = byId(`${id}-bar`);
    bar.max = Math.max(total, 1);
    bar.value = Math.min(value, bar.max);
  }

  function renderProgress(progress) {
    const total = progress.routes_total;
    byId("with-async").textContent = `${progress.routes_with_async} / ${total}`;
    setBar("with-async", progress.routes_with_async, total);
    byId("on-async").textContent = `${progress.routes_on_async} / ${total}`;
    setBar("on-async", progress.routes_on_async, total);
    const served = progress.async_request_share;
    byId("async-share").textContent = isNumber(served) ? share(served) : "no requests";
    setBar("async-share", isNumber(served) ? served * 1000 : 0, 1000);
  }

  // ---- the table ----------------------------------------------------------------------------

  const p95 = (route, impl) => (route.by_impl[impl] ? route.by_impl[impl].p95_ms : null);
  const SORTS = {
    rank: (route) => route.rank,
    route: (route) => route.route,
    impls: (route) => route.implementations.join(" "),
    mode: (route) => modeText(route),
    rps: (route) => route.requests_per_second,
    legacy: (route) => p95(route, "legacy"),
    async: (route) => p95(route, "async"),
    thread: (route) => route.thread_seconds_per_second,
    db: (route) => route.database_share,
    match: (route) => route.shadow_match_rate,
    blocked: (route) => route.event_loop_blocked,
  };

  function sorted(routes) {
    const key = SORTS[state.sortKey];
    const missing = (value) => value === null || value === undefined;
    return [...routes].sort((a, b) => {
      const left = key(a);
      const right = key(b);
      if (missing(left) || missing(right)) return missing(left) - missing(right);
      const order = typeof left === "string" ? left.localeCompare(right) : left - right;
      return order * state.direction || a.rank - b.rank;
    });
  }

  function sortBy(key) {
    state.direction = state.sortKey === key ? -state.direction : FIRST_DIRECTION[key] || -1;
    state.sortKey = key;
    for (const control of document.querySelectorAll("th button[data-sort]")) {
      const header = control.parentElement;
      if (control.dataset.sort === key) {
        header.setAttribute("aria-sort", state.direction === 1 ? "ascending" : "descending");
      } else {
        header.removeAttribute("aria-sort");
      }
    }
    byId("routes-note").textContent = key === "rank" && state.direction === 1
      ? "The advisor's order first: the route whose move frees the most threads."
      : `Sorted by ${sortButton(key).textContent.toLowerCase()}, ${state.direction === 1 ? "ascending" : "descending"}.`;
    if (state.data) renderTable(state.data);
  }

  const sortButton = (key) => document.querySelector(`th button[data-sort="${key}"]`);

  function newRow(key) {
    const row = element("tr");
    row.dataset.route = key;
    const cells = {};
    for (const name of COLUMNS) {
      const cell = element(name === "route" ? "th" : "td", NUMERIC_COLUMNS.has(name) ? "num" : name);
      cell.dataset.column = name;
      if (name === "route") cell.scope = "row";
      cells[name] = cell;
      row.append(cell);
    }
    const choose = element("button", "route-link", key);
    choose.type = "button";
    choose.setAttribute("aria-controls", "detail");
    choose.addEventListener("click", () => select(key, true));
    cells.route.append(choose);
    cells.chart.append(svgElement("svg", { class: "spark", viewBox: "0 0 120 28", role: "img" }));
    return { row, cells, choose };
  }

  function renderTable(data) {
    const body = document.querySelector("#routes tbody");
    const active = document.activeElement;
    const routes = sorted(data.routes);
    byId("routes-empty").hidden = routes.length > 0;
    const present = new Set(routes.map((route) => route.route));
    for (const [key, kept] of state.rows) {
      if (!present.has(key)) {
        kept.row.remove();
        state.rows.delete(key);
      }
    }
    routes.forEach((route, index) => {
      let kept = state.rows.get(route.route);
      if (!kept) {
        kept = newRow(route.route);
        state.rows.set(route.route, kept);
      }
      fillRow(kept, route, data);
      if (body.children[index] !== kept.row) body.insertBefore(kept.row, body.children[index] || null);
    });
    if (active && document.activeElement !== active && document.contains(active)) active.focus({ preventScroll: true });
  }

  function fillRow(kept, route, data) {
    const { cells, choose } = kept;
    cells.rank.textContent = route.rank;
    choose.setAttribute("aria-current", String(route.route === state.selected));
    kept.row.classList.toggle("selected", route.route === state.selected);
    const present = IMPLS.filter((impl) => route.implementations.includes(impl));
    cells.impls.replaceChildren(...present.map((impl) => element("span", `chip ${impl}`, impl)));
    cells.mode.replaceChildren(element("span", `mode ${route.mode}`, modeText(route)));
    if (route.plan && ACTIVE_PLAN.includes(route.plan.state)) cells.mode.append(element("span", "plan-line", planText(route.plan)));
    cells.rps.textContent = fixed(route.requests_per_second, 2);
    cells.legacy.textContent = latency(route.by_impl.legacy);
    cells.async.textContent = latency(route.by_impl.async);
    cells.thread.textContent = fixed(route.thread_seconds_per_second, 3);
    cells.db.textContent = share(route.database_share);
    cells.match.textContent = share(route.shadow_match_rate);
    cells.blocked.textContent = route.event_loop_blocked;
    cells.blocked.classList.toggle("warn", route.event_loop_blocked > 0);
    const spark = cells.chart.firstChild;
    const line = data.lines[route.route] || {};
    drawChart(spark, data, line, { width: 120, height: 28, figures: ["p95"], axes: false });
    spark.setAttribute("aria-label", chartSummary(route.route, line));
  }

  // ---- charts -------------------------------------------------------------------------------

  function latest(values) {
    for (let index = values.length - 1; index >= 0; index -= 1) if (isNumber(values[index])) return values[index];
    return null;
  }

  function latestText(line) {
    const parts = IMPLS.filter((impl) => line[impl]).map((impl) => `${impl} p95 ${fixed(latest(line[impl].p95), 1)} ms`);
    return parts.length ? `latest: ${parts.join(", ")}` : "no requests in the last minutes";
  }

  const chartSummary = (key, line) => `${key}: ${latestText(line)}`;

  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    const step = [1, 2, 5, 10].find((factor) => factor * power >= value);
    return step * power;
  }

  // From the first sample (a worker that just started has seconds, not minutes), at least a minute.
  function chartSpan(data) {
    const first = data.times.length ? data.times[0] : data.generated_at;
    const since = Math.max(data.generated_at - first, SHORTEST_SPAN_SECONDS);
    return Math.min(since, data.sampling.history_seconds);
  }

  function drawChart(svg, data, line, options) {
    const { width, height, figures, axes } = options;
    const pad = axes ? { left: 44, right: 8, top: 8, bottom: 22 } : { left: 1, right: 1, top: 2, bottom: 2 };
    const end = data.generated_at;
    const start = end - chartSpan(data);
    const values = IMPLS.flatMap((impl) => (line[impl] ? figures.flatMap((figure) => line[impl][figure]) : []));
    const top = niceCeiling(Math.max(0, ...values.filter(isNumber)) * 1.1);
    const x = (at) => pad.left + ((at - start) / (end - start)) * (width - pad.left - pad.right);
    const y = (value) => height - pad.bottom - (value / top) * (height - pad.top - pad.bottom);
    const drawn = [];
    if (axes) drawn.push(...chartAxes(x, y, top, start, end, { width, pad }));
    for (const impl of IMPLS) {
      if (!line[impl]) continue;
      for (const figure of figures) drawn.push(...series(data.times, line[impl][figure], x, y, `line ${impl} ${figure}`));
    }
    if (axes && !values.some(isNumber)) {
      drawn.push(svgText(width / 2, height / 2, "no requests in the last minutes", "empty"));
    }
    svg.replaceChildren(...drawn);
  }

  function series(times, values, x, y, className) {
    const drawn = [];
    let path = "";
    let run = 0;
    times.forEach((at, index) => {
      const value = values[index];
      if (!isNumber(value)) {
        run = 0;
        return;
      }
      path += `${run === 0 ? "M" : "L"}${x(at).toFixed(1)} ${y(value).toFixed(1)} `;
      const alone = run === 0 && !isNumber(values[index + 1]);
      if (alone) drawn.push(svgElement("circle", { cx: x(at).toFixed(1), cy: y(value).toFixed(1), r: 1.6, class: `${className} dot` }));
      run += 1;
    });
    if (path) drawn.unshift(svgElement("path", { d: path.trim(), class: className }));
    return drawn;
  }

  function svgText(x, y, text, className) {
    const label = svgElement("text", { x, y, class: className });
    label.textContent = text;
    return label;
  }

  function chartAxes(x, y, top, start, end, { width, pad }) {
    const drawn = [];
    for (const value of [0, top / 2, top]) {
      drawn.push(svgElement("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid" }));
      drawn.push(svgText(pad.left - 4, y(value) + 4, `${Math.round(value * 10) / 10} ms`, "axis y"));
    }
    const span = end - start;
    for (const before of [span, span / 2, 0]) {
      const label = before === 0 ? "now" : `−${roughly(before, span)}`;
      drawn.push(svgText(x(end - before), y(0) + 16, label, `axis x ${before === 0 ? "end" : ""}`));
    }
    return drawn;
  }

  // ---- the selected route -------------------------------------------------------------------

  function select(key, moveFocus) {
    const changed = state.selected !== key;
    state.selected = key;
    if (changed) {
      for (const id of ["mode-outcome", "plan-outcome"]) tell(id, "", null);
      const route = state.data && state.data.routes.find((found) => found.route === key);
      if (route && route.mode === "canary") setPercent(route.percent);
      state.shown.plan = null;
      state.shown.planEvents = null;
    }
    if (state.data) {
      renderTable(state.data);
      renderDetail(state.data);
    }
    if (moveFocus) byId("detail-title").focus();
  }

  function setPercent(percent) {
    byId("canary-percent").value = String(percent);
    byId("canary-output").textContent = `${percent} %`;
  }

  function selectedRoute(data) {
    let route = data.routes.find((found) => found.route === state.selected);
    if (!route && data.routes.length) {
      route = data.routes.find((found) => found.implementations.length === 2) || data.routes[0];
      state.selected = route.route;
      renderTable(data);
    }
    return route;
  }

  function renderDetail(data) {
    const route = selectedRoute(data);
    const detail = byId("detail");
    detail.hidden = !route;
    if (!route) return;
    byId("detail-title").textContent = `Route ${route.route}`;
    const changed = route.changed_by ? ` Last moved by ${route.changed_by} at ${clock(route.changed_at)}${route.reason ? `: “${route.reason}”` : ""}.` : "";
    byId("detail-summary").textContent =
      `Mode ${modeText(route)}; implementations: ${route.implementations.join(", ")}. Rank ${route.rank}: ${route.why || "no traffic in the window"}.${changed}`;
    const line = data.lines[route.route] || {};
    drawChart(byId("detail-chart"), data, line, { width: 640, height: 200, figures: ["p95", "p50"], axes: true });
    byId("detail-chart-text").textContent =
      `Latency of ${route.route} over the last ${roughly(chartSpan(data))}, per implementation; ${latestText(line)}.`;
    renderModeControls(route);
    renderPlan(route);
  }

  function renderModeControls(route) {
    const has = new Set(route.implementations);
    const needs = { legacy: ["legacy"], async: ["async"], shadow: ["legacy", "async"], canary: ["legacy", "async"] };
    for (const control of document.querySelectorAll("#mode-controls button[data-mode]")) {
      const usable = needs[control.dataset.mode].every((impl) => has.has(impl));
      control.disabled = !usable;
      control.title = usable ? "" : "needs both implementations";
    }
    const both = has.size === 2;
    byId("shadow-primary").disabled = !both;
    byId("canary-percent").disabled = !both;
  }

  function renderPlan(route) {
    const plan = route.plan;
    const active = Boolean(plan && ACTIVE_PLAN.includes(plan.state));
    const both = route.implementations.length === 2;
    byId("plan-start").disabled = active || !both;
    const allowed = { pause: plan && plan.state === "running", resume: plan && plan.state === "paused", promote: active, abort: active };
    for (const control of document.querySelectorAll("#plan-controls button[data-verb]")) control.disabled = !allowed[control.dataset.verb];
    if (!plan) {
      byId("plan-summary").textContent = both ? "No rollout plan on this route yet." : "A plan needs both implementations.";
      byId("plan-steps").replaceChildren();
      byId("plan-events").replaceChildren();
      state.shown.plan = null;
      return;
    }
    byId("plan-summary").textContent =
      `Plan ${plan.id} by ${plan.created_by}${plan.reason ? ` (“${plan.reason}”)` : ""}: ${plan.state}` +
      (active ? `, ${seconds(Math.round(plan.seconds_in_step))} into step ${plan.step + 1}.` : ".");
    const signature = JSON.stringify([plan.id, plan.state, plan.step, plan.steps.map((step) => [step.status, step.verdicts.length])]);
    if (state.shown.plan !== signature) {
      state.shown.plan = signature;
      byId("plan-steps").replaceChildren(...plan.steps.map(stepItem));
    }
    showEvents("plan-events", plan.events, "planEvents");
  }

  function stepItem(step, index) {
    const item = element("li", `plan-step ${step.status.replace(" ", "-")}`);
    const head = element("div", "step-head");
    head.append(element("span", "step-label", `${index + 1}. ${step.label}`));
    head.append(element("span", "step-status", step.status));
    item.append(head);
    if (step.mode !== "async") {
      const needs = `at least ${seconds(step.duration)}, ${step.min_requests} requests`;
      item.append(element("span", "step-needs", step.entered_at ? `${needs}; entered ${clock(step.entered_at)}` : needs));
    }
    if (step.verdicts.length) {
      const verdicts = element("ul", "verdicts");
      for (const verdict of step.verdicts) {
        const entry = element("li", `verdict ${verdict.verdict}`);
        entry.append(element("span", "badge", verdict.verdict), ` ${clock(verdict.at)} ${verdict.reason}`);
        verdicts.append(entry);
      }
      item.append(verdicts);
    }
    return item;
  }

  // ---- events and mismatches ----------------------------------------------------------------

  function showEvents(id, events, name) {
    const signature = events.map((event) => `${event.source}${event.id}`).join(",");
    if (state.shown[name] === signature) return;
    state.shown[name] = signature;
    const list = byId(id);
    if (!events.length) {
      list.replaceChildren(element("li", "empty", "No events yet."));
      return;
    }
    list.replaceChildren(...events.map(eventItem));
  }

  function eventItem(event) {
    const item = element("li", "event");
    const when = element("time", "", clock(event.at));
    when.dateTime = event.at;
    const label = event.kind === "verdict" && event.verdict ? `verdict: ${event.verdict}` : event.kind.replace("_", " ");
    const badge = element("span", `badge ${event.kind} ${event.verdict || ""}`, label);
    const route = element("span", "event-route", event.route);
    item.append(when, " ", badge, " ", route, " ", element("span", "event-text", event.text));
    return item;
  }

  function renderEvents(events) {
    showEvents("events", [...events].slice(0, 30), "events");
  }

  function renderMismatches(mismatches) {
    const signature = mismatches.map((found) => `${found.route}${found.at}`).join(",");
    if (state.shown.mismatches === signature) return;
    state.shown.mismatches = signature;
    const list = byId("mismatches");
    if (!mismatches.length) {
      list.replaceChildren(element("li", "empty", "No mismatches kept."));
      return;
    }
    list.replaceChildren(...mismatches.map(mismatchItem));
  }

  function mismatchItem(found) {
    const key = `${found.route}${found.at}`;
    const item = element("li", "mismatch");
    const details = element("details");
    details.open = state.openMismatches.has(key);
    details.addEventListener("toggle", () => {
      if (details.open) state.openMismatches.add(key);
      else state.openMismatches.delete(key);
    });
    const target = found.query ? `${found.path}?${found.query}` : found.path;
    const summary = element("summary", "", `${clock(found.at)} ${found.route}: ${target}, ${found.primary} ${found.primary_status} against ${found.shadow_status}`);
    details.append(summary, element("pre", "diff", found.diff));
    item.append(details);
    return item;
  }

  // ---- controls -----------------------------------------------------------------------------

  function changeMode(mode) {
    const key = state.selected;
    const body = { mode, reason: byId("mode-reason").value };
    if (mode === "canary") body.percent = Number(byId("canary-percent").value);
    if (mode === "shadow") body.primary = byId("shadow-primary").value;
    act("mode-outcome", "PUT", `/admin/routes/${encodeURIComponent(key)}`, body, (answer) => `Done: ${key} is now ${modeText(answer.route)}.`);
  }

  function parseSteps(text) {
    return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
      const [mode, ...rest] = line.split(/\s+/);
      const step = { mode };
      for (const token of rest) {
        const percent = token.match(/^(\d+)%$/);
        const minimum = token.match(/^min=(\d+)$/);
        if (percent) step[mode === "canary" ? "percent" : "sample"] = Number(percent[1]);
        else if (minimum) step.min_requests = Number(minimum[1]);
        else step.duration = token;
      }
      return step;
    });
  }

  function startPlan() {
    const key = state.selected;
    const steps = parseSteps(byId("plan-steps-input").value);
    const body = { route: key, reason: byId("plan-reason").value };
    if (steps.length) body.steps = steps;
    act("plan-outcome", "POST", "/admin/rollouts", body, (plan) => `Done: plan ${plan.id} started on ${key}, at step 1 (${plan.step_label}).`);
  }

  function planAction(verb) {
    const route = state.data.routes.find((found) => found.route === state.selected);
    if (!route || !route.plan) return;
    const reason = byId("plan-reason").value;
    act("plan-outcome", "POST", `/admin/rollouts/${route.plan.id}/${verb}`, { reason }, (plan) => `Done: plan ${plan.id} is ${plan.state}, at step ${plan.step + 1} (${plan.step_label}).`);
  }

  function openKillSwitch() {
    state.killOpener = document.activeElement;
    tell("kill-outcome", "", null);
    byId("kill-dialog").showModal();
    byId("kill-reason").focus();
  }

  function closeKillSwitch() {
    const dialog = byId("kill-dialog");
    if (dialog.open) dialog.close();
  }

  async function confirmKillSwitch(event) {
    event.preventDefault();
    const body = { reason: byId("kill-reason").value };
    const prefix = byId("kill-prefix").value.trim();
    if (prefix) body.path_prefix = prefix;
    const done = await act("kill-outcome", "POST", "/admin/kill-switch", body, (answer) => killText(answer, prefix));
    if (done) {
      tell("kill-status", killText(done, prefix), "done");
      closeKillSwitch();
    }
  }

  function killText(answer, prefix) {
    const where = prefix ? ` under ${prefix}` : "";
    const aborted = answer.aborted_plans.length ? `, plan(s) ${answer.aborted_plans.join(", ")} aborted` : "";
    return `Done: ${answer.moved.length} route(s)${where} moved back to legacy` +
      `, ${answer.already_legacy.length} already there${aborted}.`;
  }

  function useToken(event) {
    event.preventDefault();
    const token = byId("token-input").value.trim();
    if (!token) {
      tell("token-status", "Enter an admin token first.", "refused");
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    tell("token-status", "Checking the token…", null);
    refresh();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    state.data = null;
    clearTimeout(state.timer);
    byId("token-input").value = "";
    for (const kept of state.rows.values()) kept.row.remove();
    state.rows.clear();
    byId("routes-empty").hidden = false;
    byId("scope").textContent = "Figures: waiting for an admin token.";
    tell("token-status", "Token forgotten.", null);
  }

  function wire() {
    byId("token-form").addEventListener("submit", useToken);
    byId("token-forget").addEventListener("click", forgetToken);
    for (const control of document.querySelectorAll("th button[data-sort]")) {
      control.addEventListener("click", () => sortBy(control.dataset.sort));
    }
    for (const control of document.querySelectorAll("#mode-controls button[data-mode]")) {
      control.addEventListener("click", () => changeMode(control.dataset.mode));
    }
    byId("canary-percent").addEventListener("input", (event) => {
      byId("canary-output").textContent = `${event.target.value} %`;
    });
    byId("plan-start").addEventListener("click", startPlan);
    for (const control of document.querySelectorAll("#plan-controls button[data-verb]")) {
      control.addEventListener("click", () => planAction(control.dataset.verb));
    }
    byId("kill-open").addEventListener("click", openKillSwitch);
    byId("kill-cancel").addEventListener("click", closeKillSwitch);
    byId("kill-form").addEventListener("submit", confirmKillSwitch);
    byId("kill-dialog").addEventListener("close", () => {
      if (state.killOpener && document.contains(state.killOpener)) state.killOpener.focus();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.token) refresh();
    });
  }

  wire();
  byId("detail").hidden = true;
  if (state.token) {
    byId("token-input").value = state.token;
    tell("token-status", "Checking the token…", null);
    refresh();
  } else {
    tell("token-status", "Enter an admin token: read-write to make changes, read-only to look.", null);
  }
})();
