// The approval card: what a tool call will do, a preview, and the six answers of PRODUCT.md.
// A click sets `decision`; the card then closes itself and shows the outcome, as does cancel().

// The same labels as CHOICE_LABELS and outcome texts as outcome_text() in approval.py.
const LABELS = {
  once: "Approve once",
  session: "This session",
  session_pattern: "Pattern for this session",
  always: "Always (this exact call)",
  always_pattern: "Always (pattern)",
  deny: "Deny",
};
const HINTS = {
  once: "Run this call now and ask again next time",
  session: "Allow this exact call until the kernel restarts",
  session_pattern: "Allow every call that matches the rule until the kernel restarts",
  always: "Allow this exact call from now on (saved)",
  always_pattern: "Allow every call that matches the rule from now on (saved)",
  deny: "Refuse the call; the model is told the reason",
};
const ROWS = [
  ["Allow", ["once", "session", "always"]],
  ["Rule", ["session_pattern", "always_pattern"]],
  ["Reason", ["deny"]],
];
const PATTERN = new Set(["session_pattern", "always_pattern"]);
// A protected path (per_call_only): only these are offered, and Python refuses any other.
const PER_CALL = new Set(["once", "deny"]);
const TRAITS = [
  "tool",
  "description",
  "preview",
  "preview_kind",
  "suggestion",
  "rule",
  "reason",
  "per_call_only",
];

function outcomeText(choice, rule, reason) {
  switch (choice) {
    case "once":
      return "Approved once";
    case "session":
      return "Approved for this session";
    case "session_pattern":
      return `Allowed for this session: ${rule}`;
    case "always":
      return "Always allowed (this exact call)";
    case "always_pattern":
      return `Always allowed: ${rule}`;
    default:
      return reason ? `Denied: ${reason}` : "Denied";
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A unified diff, one block per line so +/- backgrounds span the scrolled width.
function diffLines(text) {
  const body = element("code", "shammah-approval-lines");
  for (const line of text.replace(/\n$/, "").split("\n")) {
    let kind = "context";
    if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    body.append(element("span", `shammah-approval-line shammah-approval-${kind}`, line || " "));
  }
  return body;
}

function input(className, label) {
  const node = element("input", `shammah-approval-input ${className}`);
  node.type = "text";
  node.spellcheck = false;
  node.setAttribute("aria-label", label);
  return node;
}

function build() {
  const card = element("div", "shammah-approval");
  card.setAttribute("role", "group");
  const head = element("div", "shammah-approval-head");
  const tool = element("span", "shammah-approval-tool");
  const description = element("span", "shammah-approval-description");
  head.append(tool, description, element("span", "shammah-approval-badge", "Needs approval"));
  const preview = element("pre", "shammah-approval-preview");
  preview.tabIndex = 0; // scrollable by keyboard
  const controls = element("div", "shammah-approval-controls");
  const rule = input("shammah-approval-rule", "Rule for the pattern choices");
  const reason = input("shammah-approval-reason", "Reason for denying (optional)");
  reason.placeholder = "Why not? (optional, told to the model)";
  const buttons = {};
  const rows = {};
  for (const [label, choices] of ROWS) {
    const heading = element("span", "shammah-approval-label", label);
    controls.append(heading);
    const row = element("div", "shammah-approval-row");
    rows[label] = [heading, row];
    if (label === "Rule") row.append(rule);
    if (label === "Reason") row.append(reason);
    for (const choice of choices) {
      const button = element("button", "shammah-approval-button", LABELS[choice]);
      button.type = "button";
      button.title = HINTS[choice];
      button.dataset.choice = choice;
      if (choice === "deny") button.classList.add("shammah-approval-danger");
      buttons[choice] = button;
      row.append(button);
    }
    controls.append(row);
  }
  const outcome = element("div", "shammah-approval-outcome");
  outcome.setAttribute("role", "status");
  outcome.tabIndex = -1;
  card.append(head, preview, controls, outcome);
  return { card, tool, description, preview, controls, rule, reason, buttons, rows, outcome };
}

// The card's phase from the model: cancelled wins; a known choice in `decision` means decided.
function phaseOf(model) {
  if (model.get("state") === "cancelled") return "cancelled";
  const decision = model.get("decision") || {};
  return Object.hasOwn(LABELS, decision.choice) ? "decided" : "pending";
}

function showPreview(parts, text, kind) {
  if (parts.shown && parts.shown.text === text && parts.shown.kind === kind) return;
  parts.shown = { text, kind };
  parts.preview.hidden = !text;
  parts.preview.className = `shammah-approval-preview shammah-approval-${kind}`;
  if (kind === "diff") parts.preview.replaceChildren(diffLines(text));
  else parts.preview.replaceChildren(element("code", "shammah-approval-lines", text));
}

// A value the user is typing is left alone; one set from Python (or another view) is shown.
function syncInput(node, value) {
  if (node.value !== value && document.activeElement !== node) node.value = value;
}

function draw(model, parts) {
  const phase = phaseOf(model);
  const tool = model.get("tool");
  const decision = model.get("decision") || {};
  const { card, rule, reason, buttons, outcome } = parts;
  card.dataset.state = phase;
  card.dataset.choice = phase === "decided" ? decision.choice : "";
  card.setAttribute("aria-label", `Approve a ${tool} call`);
  parts.tool.textContent = tool;
  parts.description.textContent = model.get("description");
  showPreview(parts, model.get("preview"), model.get("preview_kind"));
  syncInput(rule, model.get("rule"));
  syncInput(reason, model.get("reason"));
  rule.placeholder = model.get("suggestion") || `${tool}(…)`;

  const closed = phase !== "pending";
  const perCall = Boolean(model.get("per_call_only"));
  parts.controls.hidden = closed;
  rule.disabled = reason.disabled = closed;
  for (const node of parts.rows.Rule) node.hidden = perCall; // no rule ever covers the call
  card.dataset.perCall = perCall ? "true" : "false";
  for (const [choice, button] of Object.entries(buttons)) {
    button.hidden = perCall && !PER_CALL.has(choice);
    button.disabled =
      closed || button.hidden || (PATTERN.has(choice) && !rule.value.trim());
  }
  if (phase === "cancelled") {
    const note = model.get("note");
    outcome.textContent = note ? `Cancelled: ${note}` : "Cancelled";
  } else if (phase === "decided") {
    outcome.textContent = outcomeText(decision.choice, decision.rule, decision.reason);
  } else {
    outcome.textContent = "";
  }
  outcome.hidden = !closed;
}

export default {
  render({ model, el }) {
    const parts = build();
    el.append(parts.card);
    const redraw = () => draw(model, parts);

    // One message per card: while a cell awaits the answer, ipykernel 7.4 handles comm messages
    // without publishing an idle status, and ipywidgets holds a model's next message until then.
    const decide = (choice) => {
      const rule = parts.rule.value;
      const reason = parts.reason.value;
      model.set("decision", {
        choice,
        rule: PATTERN.has(choice) ? rule.trim() : "",
        reason: choice === "deny" ? reason.trim() : "",
      });
      model.save_changes();
      parts.outcome.focus({ preventScroll: true }); // the clicked button is gone now
    };
    for (const [choice, button] of Object.entries(parts.buttons)) {
      button.addEventListener("click", () => decide(choice));
    }
    for (const [node, name] of [
      [parts.rule, "rule"],
      [parts.reason, "reason"],
    ]) {
      node.addEventListener("input", () => {
        model.set(name, node.value); // sent with the decision, in its one message
        redraw();
      });
    }
    parts.reason.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !parts.buttons.deny.disabled) decide("deny");
    });

    const events = [...TRAITS, "decision", "state", "note"].map((name) => `change:${name}`);
    for (const name of events) model.on(name, redraw);
    redraw();
    return () => {
      for (const name of events) model.off(name, redraw);
    };
  },
};
