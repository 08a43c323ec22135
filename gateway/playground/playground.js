// The playground talks to Tandem as any client would: GET /v1/models, then streamed
// POST /v1/chat/completions with the provenance extension. No private endpoint, no build step.
"use strict";

const SOURCES = ["small", "large", "plan", "cache", "main"];
const MAX_RUNS = 4;
const models = new Map(); // alias -> model card
const runs = [];
const $ = (selector, root = document) => root.querySelector(selector);

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("#api-key").value.trim(); // kept in this page's memory, never stored
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) {
  $("#status").textContent = text;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) {
    // not an OpenAI error envelope: fall back to the status line
  }
  return `HTTP ${response.status} ${response.statusText}`;
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) {
    setStatus(`Could not list models: ${await errorMessage(response)}`);
    return false;
  }
  models.clear();
  for (const card of (await response.json()).data) models.set(card.id, card);
  for (const run of runs) fillAliases(run, run.alias.value);
  setStatus(`${models.size} models`);
  return true;
}

// --- the conversation ------------------------------------------------------------------------

function addMessage(role = "user", content = "") {
  const item = $("#message-template").content.firstElementChild.cloneNode(true);
  $(".role", item).value = role;
  $(".content", item).value = content;
  $(".remove", item).addEventListener("click", () => item.remove());
  $("#messages").append(item);
  return item;
}

function conversation() {
  return [...document.querySelectorAll("#messages .message")]
    .map((item) => ({ role: $(".role", item).value, content: $(".content", item).value }))
    .filter((m) => m.content.trim() !== "");
}

// --- runs ------------------------------------------------------------------------------------

function policyOf(alias) {
  const card = models.get(alias);
  return card && card.tandem ? card.tandem.policy : "direct";
}

function fillAliases(run, wanted) {
  run.alias.replaceChildren(
    ...[...models.keys()].map((alias) => new Option(`${alias} (${policyOf(alias)})`, alias)),
  );
  if (models.has(wanted)) run.alias.value = wanted;
  showKnobs(run);
}

// each knob and the `tandem` key it sets; the alias's card says which keys a request may set
const KNOBS = { ".trigger": "trigger", ".threshold": "threshold", ".span": "span",
  ".plan-budget": "plan_max_tokens" };

function allowedOverrides(alias) {
  const card = models.get(alias);
  return (card && card.tandem && card.tandem.overrides) || {};
}

function showKnobs(run) {
  const policy = policyOf(run.alias.value);
  $(".knobs-collab", run.el).hidden = policy !== "collab";
  $(".knobs-hawkeye", run.el).hidden = policy !== "hawkeye";
  const card = models.get(run.alias.value);
  $(".description", run.el).textContent = (card && card.tandem && card.tandem.description) || "";
  const allowed = allowedOverrides(run.alias.value);
  for (const [selector, key] of Object.entries(KNOBS)) {
    const input = $(selector, run.el);
    input.disabled = !(key in allowed);
    input.title = input.disabled ? "this alias does not let a request change it" : "";
  }
  const choices = (allowed.trigger && allowed.trigger.choices) || null;
  for (const option of $(".trigger", run.el).options) {
    option.disabled = option.value !== "" && choices !== null && !choices.includes(option.value);
  }
}

function addRun(alias, knobs = {}) {
  if (runs.length >= MAX_RUNS) return null;
  const el = $("#run-template").content.firstElementChild.cloneNode(true);
  const run = { el, alias: $(".alias", el), controller: null, answer: "" };
  run.alias.addEventListener("change", () => showKnobs(run));
  $(".remove-run", el).addEventListener("click", () => removeRun(run));
  $(".use-reply", el).addEventListener("click", () => {
    addMessage("assistant", run.answer);
    addMessage("user", "").querySelector(".content").focus();
  });
  fillAliases(run, alias);
  setKnobs(run, knobs);
  runs.push(run);
  $("#runs").append(el);
  return run;
}

function removeRun(run) {
  if (run.controller) run.controller.abort();
  runs.splice(runs.indexOf(run), 1);
  run.el.remove();
}

function setKnobs(run, knobs) {
  $(".trigger", run.el).value = knobs.trigger || "";
  $(".threshold", run.el).value = knobs.threshold ?? "";
  $(".span", run.el).value = knobs.span ?? "";
  $(".plan-budget", run.el).value = knobs.plan_max_tokens ?? "";
}

function numberOf(input) {
  return input.disabled || input.value.trim() === "" ? undefined : Number(input.value);
}

// A plan counts in max_tokens, as reasoning does; the page's "max tokens" is the answer's, so a
// HAWKEYE run asks for its plan budget on top (the default catalog's budget when none is set).
const DEFAULT_PLAN_BUDGET = 96;

function planBudget(run) {
  return numberOf($(".plan-budget", run.el)) ?? DEFAULT_PLAN_BUDGET;
}

function overrides(run) {
  const policy = policyOf(run.alias.value);
  const options = { provenance: true };
  if ($("#no-cache").checked) options.cache = "no-cache";
  if (policy === "collab") {
    const trigger = $(".trigger", run.el);
    if (trigger.value && !trigger.disabled) options.trigger = trigger.value;
    const threshold = numberOf($(".threshold", run.el));
    if (threshold !== undefined) options.threshold = threshold;
    const span = numberOf($(".span", run.el));
    if (span !== undefined) options.span = span;
  } else if (policy === "hawkeye") {
    const budget = numberOf($(".plan-budget", run.el));
    if (budget !== undefined) options.plan_max_tokens = budget;
  }
  return options;
}

function requestBody(run, messages) {
  const answer = numberOf($("#max-tokens")) ?? 48;
  const hawkeye = policyOf(run.alias.value) === "hawkeye";
  return {
    model: run.alias.value,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: numberOf($("#temperature")) ?? 0,
    max_tokens: hawkeye ? answer + planBudget(run) : answer,
    tandem: overrides(run),
  };
}

// --- one streamed answer -----------------------------------------------------------------------

function stat(run, name, value) {
  $(`[data-stat="${name}"]`, run.el).textContent = value;
}

function resetOutput(run) {
  run.answer = "";
  $(".answer", run.el).replaceChildren();
  $(".plan-text", run.el).replaceChildren();
  $(".plan", run.el).hidden = true;
  $(".error", run.el).hidden = true;
  $(".use-reply", run.el).hidden = true;
  for (const name of ["tokens", "upload_ratio", "interventions", "ttft", "tps", "degraded", "cache"]) {
    stat(run, name, "-");
  }
}

function appendToken(container, text, source) {
  const span = document.createElement("span");
  const known = SOURCES.includes(source) ? source : "main";
  span.className = `tok src-${known}`;
  span.dataset.source = known;
  span.title = known;
  span.textContent = text;
  container.append(span);
}

function showError(run, message) {
  const el = $(".error", run.el);
  el.textContent = message;
  el.hidden = false;
}

// Server-sent events from a fetch body: frames end with a blank line; `:` lines are pings.
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

function showReport(run, report, timing) {
  const tokens = Object.entries(report.tokens || {})
    .map(([source, n]) => `${source} ${n}`)
    .join(", ");
  stat(run, "tokens", tokens || "0");
  stat(run, "upload_ratio", String(report.upload_ratio ?? 0));
  stat(run, "interventions", String(report.interventions ?? 0));
  stat(run, "degraded", report.degraded ? "yes" : "no");
  stat(run, "cache", report.cache || "-");
  showTiming(run, timing);
}

function showTiming(run, timing) {
  if (timing.first !== null) stat(run, "ttft", `${Math.round(timing.first - timing.start)} ms`);
  const seconds = (timing.last - timing.first) / 1000;
  if (timing.tokens > 1 && seconds > 0) {
    stat(run, "tps", ((timing.tokens - 1) / seconds).toFixed(1));
  }
}

// While streaming: chunks by source so far (the report's exact token counts replace them)
function showLive(run, timing) {
  const sofar = Object.entries(timing.chunks).map(([source, n]) => `${source} ${n}`);
  stat(run, "tokens", `${sofar.join(", ")} ...`);
  showTiming(run, timing);
}

function onChunk(run, chunk, timing) {
  if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
  for (const choice of chunk.choices || []) {
    if (choice.index !== 0) continue;
    const delta = choice.delta || {};
    const source = choice.tandem ? choice.tandem.source : "main";
    if (delta.reasoning_content) {
      $(".plan", run.el).hidden = false;
      appendToken($(".plan-text", run.el), delta.reasoning_content, "plan");
    }
    if (delta.content) {
      appendToken($(".answer", run.el), delta.content, source);
      run.answer += delta.content;
    }
    if (delta.content || delta.reasoning_content) {
      timing.last = performance.now();
      if (timing.first === null) timing.first = timing.last;
      timing.tokens += 1;
      const counted = delta.reasoning_content ? "plan" : source;
      timing.chunks[counted] = (timing.chunks[counted] || 0) + 1;
      showLive(run, timing);
    }
  }
  if (chunk.tandem) {
    // every token any model wrote, the plan's included, for the rate
    const written = Object.values(chunk.tandem.tokens || {}).reduce((a, b) => a + b, 0);
    if (written > 0) timing.tokens = written;
    showReport(run, chunk.tandem, timing);
  }
}

async function stream(run, messages) {
  resetOutput(run);
  run.controller = new AbortController();
  const timing = { start: performance.now(), first: null, last: null, tokens: 0, chunks: {} };
  stat(run, "state", "waiting");
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(requestBody(run, messages)),
      signal: run.controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    stat(run, "state", "streaming");
    for await (const chunk of sseData(response.body)) onChunk(run, chunk, timing);
    stat(run, "state", "done");
    $(".use-reply", run.el).hidden = run.answer === "";
  } catch (error) {
    const stopped = error.name === "AbortError";
    stat(run, "state", stopped ? "stopped" : "failed");
    if (!stopped) showError(run, error.message);
  } finally {
    run.controller = null;
  }
}

async function sendAll() {
  const messages = conversation();
  if (messages.length === 0) {
    setStatus("Write a message first.");
    return;
  }
  if (runs.length === 0) addRun([...models.keys()][0]);
  $("#send").disabled = true;
  $("#stop").disabled = false;
  setStatus("Running...");
  const started = performance.now();
  await Promise.all(runs.map((run) => stream(run, messages)));
  setStatus(`Finished in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  $("#send").disabled = false;
  $("#stop").disabled = true;
}

function stopAll() {
  for (const run of runs) if (run.controller) run.controller.abort();
}

function comparePreset() {
  const collab = [...models.values()].find((card) => policyOf(card.id) === "collab");
  if (!collab) {
    setStatus("No collab alias in this catalog.");
    return;
  }
  while (runs.length) removeRun(runs[0]);
  addRun(collab.id, { trigger: "never" });
  addRun(collab.id, {});
  addRun(collab.id, { trigger: "always" });
}

async function start() {
  addMessage("user", "What is the capital of France? Answer in one sentence.");
  $("#add-message").addEventListener("click", () => addMessage().querySelector(".content").focus());
  $("#add-run").addEventListener("click", () => addRun([...models.keys()][0]));
  $("#compare-preset").addEventListener("click", comparePreset);
  $("#send").addEventListener("click", sendAll);
  $("#stop").addEventListener("click", stopAll);
  $("#api-key").addEventListener("change", loadModels);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("#send").disabled) {
      event.preventDefault();
      sendAll();
    }
  });
  if (await loadModels()) {
    const aliases = [...models.keys()];
    const collab = aliases.find((alias) => policyOf(alias) === "collab");
    addRun(collab || aliases[0]);
    addRun(collab ? collab : aliases[0], collab ? { trigger: "always" } : {});
  }
  document.body.dataset.ready = "true";
}

start();
