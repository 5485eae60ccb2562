"""The page at GET /: a text box, the predicted label and every label's probability as a bar.

Self-contained (inline CSS and JS, nothing fetched but /predict) so it works offline and behind a
firewall. The run's labels and whether a key is needed are filled in when the app is built.
"""

from __future__ import annotations

import html
import json

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>textcls: __TITLE__</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; }
  .sub { color: #666; margin-top: 0; }
  textarea { width: 100%; box-sizing: border-box; min-height: 7rem; font: inherit; padding: .5rem; }
  input[type=password] { width: 100%; box-sizing: border-box; font: inherit; padding: .3rem; }
  button { font: inherit; padding: .4rem 1.2rem; margin-top: .5rem; cursor: pointer; }
  #result { margin-top: 1.2rem; }
  #label { font-size: 1.2rem; font-weight: 600; }
  .row { display: grid; grid-template-columns: 10rem 1fr 4.5rem; gap: .5rem; align-items: center; margin: .25rem 0; }
  .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .track { background: #eee; height: 1rem; border-radius: 3px; }
  .bar { background: #4a7bd0; height: 100%; border-radius: 3px; }
  .top .bar { background: #2a9d5c; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>textcls: __TITLE__</h1>
<p class="sub">__LABELS__ labels. Type a text and press Classify (or Ctrl+Enter).</p>
<form id="form">
  __KEY_FIELD__
  <textarea id="text" name="text" placeholder="Text to classify" required></textarea>
  __PAIR_FIELD__
  <button id="submit" type="submit">Classify</button>
</form>
<div id="result" aria-live="polite"></div>
<script>
const LABELS = __LABELS_JSON__;
const form = document.getElementById("form"), result = document.getElementById("result");
function show(prediction) {
  result.replaceChildren();
  const head = document.createElement("p");
  head.innerHTML = 'Label: <span id="label"></span> (<span id="probability"></span>)';
  head.querySelector("#label").textContent = prediction.label;
  head.querySelector("#probability").textContent = (100 * prediction.probability).toFixed(1) + "%";
  result.appendChild(head);
  for (const item of prediction.top_k) {
    const row = document.createElement("div");
    row.className = "row" + (item.label === prediction.label ? " top" : "");
    const name = document.createElement("span"); name.className = "name"; name.textContent = item.label;
    name.title = item.label;
    const track = document.createElement("div"); track.className = "track";
    const bar = document.createElement("div"); bar.className = "bar";
    bar.style.width = (100 * item.probability).toFixed(1) + "%"; track.appendChild(bar);
    const num = document.createElement("span"); num.className = "num";
    num.textContent = (100 * item.probability).toFixed(1) + "%";
    row.append(name, track, num); result.appendChild(row);
  }
}
function fail(message) {
  const p = document.createElement("p"); p.className = "error"; p.id = "error"; p.textContent = message;
  result.replaceChildren(p);
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {texts: [document.getElementById("text").value], top_k: LABELS.length};
  const pair = document.getElementById("pair");
  if (pair) body.pairs = [pair.value];
  const headers = {"Content-Type": "application/json"};
  const key = document.getElementById("key");
  if (key && key.value) headers["Authorization"] = "Bearer " + key.value;
  try {
    const response = await fetch("predict", {method: "POST", headers, body: JSON.stringify(body)});
    const data = await response.json();
    if (!response.ok) return fail(data.error || ("error " + response.status));
    show(data.predictions[0]);
  } catch (err) {
    fail("the server did not answer: " + err);
  }
});
document.getElementById("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
</script>
</body>
</html>
"""

KEY_FIELD = ('<label for="key">API key</label>\n  <input id="key" name="key" type="password" '
             'autocomplete="current-password" placeholder="the server\'s --api-key">\n  <br><br>')
PAIR_FIELD = ('<textarea id="pair" name="pair" placeholder="Second text of the pair" required></textarea>')


def render_page(title: str, labels: list[str], needs_key: bool, pairs: bool) -> str:
    """The page for one run; `title` and `labels` are escaped (they come from the run directory)."""
    labels_json = json.dumps(labels).replace("<", "\\u003c")  # no "</script>" can close the script early
    return (PAGE.replace("__TITLE__", html.escape(title))
            .replace("__LABELS__", str(len(labels)))
            .replace("__KEY_FIELD__", KEY_FIELD if needs_key else "")
            .replace("__PAIR_FIELD__", PAIR_FIELD if pairs else "")
            .replace("__LABELS_JSON__", labels_json))
