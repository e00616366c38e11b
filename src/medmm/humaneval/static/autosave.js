// Autosave: every answer is sent to the server as soon as it changes, so a closed tab loses nothing.
// Without JavaScript the form still works: "Save and next" posts the whole form.
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  if (!form) { return; }
  var api = form.getAttribute("data-api");
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var status = document.getElementById("save-status");
  var pending = {};
  var timer = null;

  function value(el) {
    if (el.type === "number" || el.type === "radio" && el.name !== "preference") {
      return el.value === "" ? null : parseInt(el.value, 10);
    }
    return el.value === "" ? null : el.value;
  }

  function flush(keepalive) {
    if (timer) { clearTimeout(timer); timer = null; }
    var body = pending;
    if (Object.keys(body).length === 0) { return Promise.resolve(); }
    pending = {};
    status.textContent = "saving...";
    return fetch(api, {
      method: "POST",
      credentials: "same-origin",
      keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(body)
    }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      status.textContent = "saved";
      form.setAttribute("data-saved", String(Date.now()));
    }).catch(function (e) {
      // Put the answers back so the next change (or Save and next) retries them.
      for (var k in body) { if (!(k in pending)) { pending[k] = body[k]; } }
      status.textContent = "not saved (" + e.message + "), will retry";
    });
  }

  function queue(el, delay) {
    if (!el.name || el.name === "csrf_token") { return; }
    if (el.type === "number" && el.value !== "" && !el.checkValidity()) {
      status.textContent = "invalid number"; return;
    }
    pending[el.name] = value(el);
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(flush, delay);
  }

  form.addEventListener("change", function (ev) { queue(ev.target, 0); });
  form.addEventListener("input", function (ev) {
    if (ev.target.tagName === "TEXTAREA") { queue(ev.target, 600); }
  });
  window.addEventListener("pagehide", function () { flush(true); });
})();
