// The feedback card under an answer: a rating, a note, for critical and medium a better answer
// (typed, or proposed by a model), and Save. Python stores it and says what it stored.

// The ratings of feedback.py's Rating; the weights come from the `weights` trait.
const RATINGS = [
  ["critical", "Critical", "A strategy error: never answer like this"],
  ["medium", "Medium", "Works, but another approach is better"],
  ["good", "Good", "Remember this answer as it is"],
];
const NEEDS_BETTER = new Set(["critical", "medium"]);
const TRAITS = [
  "rating",
  "note",
  "better_answer",
  "weights",
  "proposer",
  "can_propose",
  "proposing",
  "stored",
  "saved",
  "buffer",
  "error",
];

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(className, text) {
  const node = element("button", `shammah-feedback-button ${className}`, text);
  node.type = "button";
  return node;
}

function build() {
  const card = element("div", "shammah-feedback");
  card.setAttribute("role", "group");
  card.setAttribute("aria-label", "Rate this answer");

  const head = element("div", "shammah-feedback-head");
  const ratings = element("div", "shammah-feedback-ratings");
  const buttons = {};
  for (const [rating, , hint] of RATINGS) {
    const node = button("shammah-feedback-rating", "");
    node.dataset.rating = rating;
    node.title = hint;
    buttons[rating] = node;
    ratings.append(node);
  }
  const note = element("input", "shammah-feedback-input shammah-feedback-note");
  note.type = "text";
  note.placeholder = "Note (optional): what was wrong, or right";
  note.setAttribute("aria-label", "Note");
  head.append(element("span", "shammah-feedback-title", "Rate this answer"), ratings, note);

  const betterBox = element("div", "shammah-feedback-better-box");
  const betterHead = element("div", "shammah-feedback-better-head");
  const propose = button("shammah-feedback-propose", "Propose");
  const busy = element("span", "shammah-feedback-busy");
  busy.setAttribute("role", "status");
  betterHead.append(element("span", "shammah-feedback-label", "Better answer"), propose, busy);
  const better = element("textarea", "shammah-feedback-input shammah-feedback-better");
  better.rows = 5;
  better.spellcheck = false;
  better.placeholder = "The answer the model should have given (required)";
  better.setAttribute("aria-label", "Better answer");
  betterBox.append(betterHead, better);

  const foot = element("div", "shammah-feedback-foot");
  const save = button("shammah-feedback-save", "Save");
  const error = element("div", "shammah-feedback-error");
  error.setAttribute("role", "alert");
  const stored = element("div", "shammah-feedback-stored");
  stored.setAttribute("role", "status");
  const buffer = element("div", "shammah-feedback-buffer");
  const outcome = element("div", "shammah-feedback-outcome");
  outcome.append(error, stored, buffer);
  foot.append(save, outcome);

  card.append(head, betterBox, foot);
  return { card, buttons, note, betterBox, propose, busy, better, save, error, stored, buffer };
}

// A value the user is typing is left alone; one set from Python is shown. A read-only field (a
// proposal being written) takes the proposal even if it has the focus.
function syncInput(node, value) {
  if (node.value !== value && (document.activeElement !== node || node.readOnly)) {
    node.value = value;
  }
}

function ratingLabel(name, weight) {
  return typeof weight === "number" ? `${name} (${weight}x)` : name;
}

// Whether the form on screen is the one saved last (good keeps no better answer).
function isSaved(saved, rating, note, better) {
  if (!saved || saved.rating !== rating || saved.note !== note) return false;
  return !NEEDS_BETTER.has(rating) || saved.better_answer === better;
}

function draw(model, parts) {
  const { card, buttons, note, better, propose, save } = parts;
  const rating = model.get("rating");
  const proposing = model.get("proposing");
  const stored = model.get("stored");
  const weights = model.get("weights") || {};
  syncInput(note, model.get("note"));
  syncInput(better, model.get("better_answer"));
  better.readOnly = proposing;

  for (const [value, name] of RATINGS) {
    buttons[value].textContent = ratingLabel(name, weights[value]);
    buttons[value].setAttribute("aria-pressed", String(rating === value));
  }
  const needsBetter = NEEDS_BETTER.has(rating);
  const saved = stored !== "" && isSaved(model.get("saved"), rating, note.value, better.value);
  card.dataset.rating = rating;
  card.dataset.state = proposing ? "proposing" : saved ? "saved" : stored ? "edited" : "new";

  parts.betterBox.hidden = !needsBetter;
  const proposer = model.get("proposer");
  propose.hidden = !model.get("can_propose");
  propose.disabled = proposing;
  propose.title = `Ask ${proposer || "the model"} for a better answer (uses the note)`;
  parts.busy.textContent = proposing ? `Proposing with ${proposer || "the model"}…` : "";
  parts.busy.hidden = !proposing;

  save.disabled = !rating || proposing || saved || (needsBetter && !better.value.trim());
  save.textContent = saved ? "Saved" : stored ? "Update" : "Save";
  save.title = stored ? "Replace the example saved before" : "Save this answer as an example";

  const error = model.get("error");
  parts.error.textContent = error;
  parts.error.hidden = !error;
  parts.stored.textContent = stored;
  parts.stored.hidden = !stored;
  parts.buffer.textContent = model.get("buffer");
  parts.buffer.hidden = !stored || !model.get("buffer");
}

export default {
  render({ model, el }) {
    const parts = build();
    el.append(parts.card);
    const redraw = () => draw(model, parts);

    // One custom message per click, carrying the whole form: ipywidgets holds back a state sync
    // while an earlier one is unanswered, but not a custom message, so the two could swap.
    const send = (kind) => {
      model.send({
        kind,
        rating: model.get("rating"),
        note: parts.note.value,
        better_answer: parts.better.value,
      });
    };
    const saveIfReady = () => {
      if (!parts.save.disabled) send("save");
    };

    for (const [rating, button] of Object.entries(parts.buttons)) {
      button.addEventListener("click", () => {
        model.set("rating", rating); // local until a click sends the form
        redraw();
        if (NEEDS_BETTER.has(rating)) parts.better.focus({ preventScroll: true });
      });
    }
    parts.propose.addEventListener("click", () => send("propose"));
    parts.save.addEventListener("click", saveIfReady);
    for (const [node, name] of [
      [parts.note, "note"],
      [parts.better, "better_answer"],
    ]) {
      node.addEventListener("input", () => {
        model.set(name, node.value);
        redraw();
      });
    }
    parts.note.addEventListener("keydown", (event) => {
      if (event.key === "Enter") saveIfReady();
    });
    parts.better.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) saveIfReady();
    });

    const events = TRAITS.map((name) => `change:${name}`);
    for (const name of events) model.on(name, redraw);
    redraw();
    return () => {
      for (const name of events) model.off(name, redraw);
    };
  },
};
