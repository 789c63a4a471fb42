// The engine status card: a state dot, the model, a progress bar while busy, and a hint on trouble.

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
const TRAITS = [
  "state",
  "model",
  "detail",
  "hint",
  "downloaded_bytes",
  "total_bytes",
  "bytes_per_second",
  "eta_seconds",
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

function progressBar(state, done, total) {
  const bar = element("div", "shammah-status-bar");
  const fill = element("div", "shammah-status-fill");
  bar.setAttribute("role", "progressbar");
  if (state === "downloading" && total > 0) {
    const percent = Math.min((100 * done) / total, 100);
    fill.style.width = `${percent.toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", String(Math.floor(percent)));
  } else {
    bar.classList.add("shammah-status-bar-indeterminate");
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
  if (BUSY.has(state)) parts.push(progressBar(state, done, total));
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
  card.replaceChildren(...parts);
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
