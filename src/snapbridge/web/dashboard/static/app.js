// The dashboard's only script: confirm prompts and the workflow builder's pickers and live dry-run preview.
"use strict";
document.querySelectorAll("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", function (e) { if (!window.confirm(form.dataset.confirm)) { e.preventDefault(); } });
});
(function () {
  var yaml = document.getElementById("yaml");
  if (!yaml) { return; }
  var preview = document.getElementById("preview");
  var csrf = document.querySelector("#builder input[name=csrf]").value;
  var fields = JSON.parse(document.getElementById("fields").textContent);
  var trigger = document.getElementById("pick-trigger");
  var fieldPick = document.getElementById("pick-field");
  function fillFields() {
    fieldPick.innerHTML = "";
    (fields[trigger.value] || []).forEach(function (path) {
      var o = document.createElement("option"); o.textContent = path; fieldPick.appendChild(o);
    });
  }
  function insert(text) {
    var at = yaml.selectionStart || yaml.value.length;
    yaml.value = yaml.value.slice(0, at) + text + yaml.value.slice(yaml.selectionEnd || at);
    schedule();
  }
  trigger.addEventListener("change", fillFields);
  document.getElementById("use-trigger").addEventListener("click", function () {
    var parts = trigger.value.split(":");
    yaml.value = yaml.value.replace(/trigger:\n(  .*\n)+/, "trigger:\n  app: " + parts[0] + "\n  event: [" + parts[1] + "]\n");
    schedule();
  });
  document.getElementById("add-step").addEventListener("click", function () {
    var action = document.getElementById("pick-action").value;
    var n = (yaml.value.match(/^  - id:/mg) || []).length + 1;
    yaml.value = yaml.value.replace(/\s*$/, "\n") + "  - id: step" + n + "\n    action: " + action + "\n    input: {}\n";
    schedule();
  });
  document.getElementById("insert-field").addEventListener("click", function () {
    insert("{{ " + fieldPick.value + " }}");
  });
  var timer = null;
  function schedule() { clearTimeout(timer); timer = setTimeout(run, 300); }
  function run() {
    fetch("/api/v1/workflows/dry-run", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({yaml: yaml.value})
    }).then(function (r) { return r.json().then(function (body) { return [r.status, body]; }); })
      .then(function (res) {
        var body = res[1];
        if (res[0] === 200) { preview.textContent = body.text; return; }
        preview.textContent = body.error + "\n" + (body.problems || []).map(function (p) {
          return (p.path ? p.path + ": " : "") + p.message; }).join("\n");
      }).catch(function () { preview.textContent = "preview unavailable"; });
  }
  yaml.addEventListener("input", schedule);
  fillFields();
  run();
})();
