// The engine status card: a state dot, the model, a progress bar while busy, and a hint on trouble;
// below it, the background training of a LoRA adapter and the adapter that answers.

const LABELS = {
  initializing: "Starting",
  downloading: "Downloading",
  loading: "Loading",
  ready: "Ready",
  failed: "Failed",
  offline: "Offline",
};
const BUSY = new Set(["initializing", "downloading", "loading"]);
const TROUBLE = new Set(["failed", "offline"]);
const TRAINING_LABELS = {
  preparing: "Preparing",
  training: "Training",
  done: "Done",
  cancelled: "Cancelled",
  failed: "Failed",
};
const TRAITS = [
  "state",
  "model",
  "detail",
  "hint",
  "downloaded_bytes",
  "total_bytes",
  "bytes_per_second",
  "eta_seconds",
  "training_state",
  "training_adapter",
  "active_adapter",
  "training_detail",
  "iteration",
  "total_iterations",
  "train_loss",
  "val_loss",
  "training_tokens_per_second",
  "training_eta_seconds",
  "training_examples",
  "training_buffer",
];

// Decimal units and rounded-up durations, as status_text() in status.py writes them.
function formatBytes(n) {
  if (n < 1000) return `${Math.max(Math.round(n), 0)} B`;
  let value = n;
  let unit = "B";
  for (const next of ["KB", "MB", "GB"]) {
    value /= 1000;
    unit = next;
    if (value < 1000) break;
  }
  return `${value.toFixed(1)} ${unit}`;
}

function formatDuration(seconds) {
  const total = Math.max(Math.ceil(seconds), 0);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  const pad = (x) => String(x).padStart(2, "0");
  if (hours) return `${hours}h${pad(minutes)}m`;
  return minutes ? `${minutes}m${pad(secs)}s` : `${secs}s`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function plural(n, noun) {
  return n === 1 ? `${n} ${noun}` : `${n} ${noun}s`;
}

// `prefix` is shammah-status or shammah-training; a percent of null draws a sliding bar.
function progressBar(prefix, percent) {
  const bar = element("div", `${prefix}-bar`);
  const fill = element("div", `${prefix}-fill`);
  bar.setAttribute("role", "progressbar");
  if (percent === null) {
    bar.classList.add(`${prefix}-bar-indeterminate`);
  } else {
    const clamped = Math.min(Math.max(percent, 0), 100);
    fill.style.width = `${clamped.toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", String(Math.floor(clamped)));
  }
  bar.append(fill);
  return bar;
}

function numbers(done, total, rate, eta) {
  const parts = [total > 0 ? `${formatBytes(done)} / ${formatBytes(total)}` : formatBytes(done)];
  if (total > 0) parts[0] += ` (${Math.min(Math.floor((100 * done) / total), 100)}%)`;
  if (rate > 0) parts.push(`${formatBytes(rate)}/s`);
  if (eta >= 0) parts.push(`ETA ${formatDuration(eta)}`);
  return element("div", "shammah-status-numbers", parts.join(" · "));
}

function draw(model, card) {
  const state = model.get("state");
  const done = model.get("downloaded_bytes");
  const total = model.get("total_bytes");
  card.className = `shammah-status shammah-status-${state}`;
  card.dataset.state = state;

  const head = element("div", "shammah-status-head");
  head.append(
    element("span", "shammah-status-dot"),
    element("span", "shammah-status-model", model.get("model") || "Shammah"),
    element("span", "shammah-status-label", LABELS[state] || state),
  );
  const parts = [head];
  if (BUSY.has(state)) {
    const known = state === "downloading" && total > 0;
    parts.push(progressBar("shammah-status", known ? (100 * done) / total : null));
  }
  if (state === "downloading") {
    parts.push(numbers(done, total, model.get("bytes_per_second"), model.get("eta_seconds")));
  }
  const detail = model.get("detail");
  const hint = model.get("hint");
  if (TROUBLE.has(state) && (detail || hint)) {
    const box = element("div", "shammah-status-trouble");
    if (detail) box.append(element("div", "shammah-status-detail", detail));
    if (hint) box.append(element("div", "shammah-status-hint", hint));
    parts.push(box);
  } else if (detail) {
    parts.push(element("div", "shammah-status-detail", detail));
  }
  const training = trainingSection(model);
  if (training) parts.push(training);
  card.replaceChildren(...parts);
}

// -1 stands for a value not known yet (None in TrainingStatus), as in status.py.
function trainingNumbers(model) {
  const iteration = model.get("iteration");
  const total = model.get("total_iterations");
  const trainLoss = model.get("train_loss");
  const valLoss = model.get("val_loss");
  const rate = model.get("training_tokens_per_second");
  const eta = model.get("training_eta_seconds");
  const parts = [total > 0 ? `iter ${iteration}/${total}` : `iter ${iteration}`];
  if (trainLoss >= 0) {
    parts.push(`loss ${trainLoss.toFixed(3)}` + (valLoss >= 0 ? ` (val ${valLoss.toFixed(3)})` : ""));
  } else if (valLoss >= 0) {
    parts.push(`val loss ${valLoss.toFixed(3)}`);
  }
  if (rate > 0) parts.push(`${rate.toFixed(0)} tok/s`);
  if (eta >= 0) parts.push(`ETA ${formatDuration(eta)}`);
  return element("div", "shammah-training-numbers", parts.join(" · "));
}

function trainingRun(model, state) {
  const adapter = model.get("training_adapter");
  const examples = model.get("training_examples");
  const title = (adapter ? `Training ${adapter}` : "Training") +
    (examples > 0 ? ` · ${plural(examples, "example")}` : "");
  const head = element("div", "shammah-training-head");
  head.append(
    element("span", "shammah-training-title", title),
    element("span", "shammah-training-label", TRAINING_LABELS[state] || state),
  );
  const parts = [head];
  if (state === "preparing") parts.push(progressBar("shammah-training", null));
  if (state === "training") {
    const iteration = model.get("iteration");
    const total = model.get("total_iterations");
    parts.push(progressBar("shammah-training", total > 0 ? (100 * iteration) / total : null));
    parts.push(trainingNumbers(model));
  }
  const detail = model.get("training_detail");
  if (detail && state === "failed") {
    const box = element("div", "shammah-training-trouble");
    box.append(element("div", "shammah-training-detail", detail));
    parts.push(box);
  } else if (detail) {
    parts.push(element("div", "shammah-training-detail", detail));
  }
  return parts;
}

// Nothing until training has something to say: a run, an adapter in use, or new examples.
function trainingSection(model) {
  const state = model.get("training_state");
  const active = model.get("active_adapter");
  const buffer = model.get("training_buffer");
  if (state === "idle" && !active && buffer <= 0) return null;
  const section = element("div", `shammah-training shammah-training-${state}`);
  section.dataset.trainingState = state;
  const adapters = element("div", "shammah-training-adapters");
  adapters.append(
    element("span", "shammah-training-active", `Adapter: ${active || "none (base model)"}`),
    document.createTextNode(" · "),
    element("span", "shammah-training-buffer", `Buffer: ${plural(buffer, "new example")}`),
  );
  section.replaceChildren(adapters, ...(state === "idle" ? [] : trainingRun(model, state)));
  return section;
}

export default {
  render({ model, el }) {
    const card = element("div", "shammah-status");
    el.append(card);
    // One update message sets every trait: draw once after all its change events.
    let pending = false;
    const redraw = () => {
      if (pending) return;
      pending = true;
      queueMicrotask(() => {
        pending = false;
        draw(model, card);
      });
    };
    for (const name of TRAITS) model.on(`change:${name}`, redraw);
    draw(model, card);
    return () => {
      for (const name of TRAITS) model.off(`change:${name}`, redraw);
    };
  },
};
