// Keeps the dashboard's slices up to date while they change, without reloading the page.
(function () {
  "use strict";
  function set(section, field, value) {
    var el = section.querySelector('[data-field="' + field + '"]');
    if (!el) return;
    el.textContent = value == null || value === "" ? (field === "node" || field === "ip" ? "—" : "") : value;
    if (field === "step" || field === "place" || field === "failure" || field === "pending") el.hidden = !value;
  }
  function poll(section) {
    var id = section.getAttribute("data-slice");
    fetch("/slices/" + id + "/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        var badge = section.querySelector('[data-field="state"]');
        badge.textContent = s.state;
        badge.className = "badge state-" + s.state;
        set(section, "step", s.step);
        // Something is being done to it ("Stopping…"): said, and its buttons wait.
        set(section, "pending", s.pending);
        section.querySelectorAll(".actions > form button").forEach(function (b) { b.disabled = !!s.pending; });
        var bar = section.querySelector("[data-field-progress]");
        if (bar) {
          bar.hidden = !s.progress;
          if (s.progress) { bar.value = s.progress; bar.textContent = s.progress + "%"; }
        }
        set(section, "place", s.place ? "No node has room right now: you are number " + s.place + " in the queue." : "");
        set(section, "failure", s.state === "failed" ? s.failure : "");
        set(section, "node", s.node);
        set(section, "ip", s.ip);
        var events = section.querySelector('[data-field="events"]');
        events.textContent = "";
        s.events.forEach(function (e) {
          var li = document.createElement("li");
          var t = document.createElement("time");
          t.textContent = e.at;
          li.appendChild(t);
          li.appendChild(document.createTextNode(" " + e.message));
          events.appendChild(li);
        });
        section.querySelectorAll("[data-show-when]").forEach(function (el) {
          el.hidden = el.getAttribute("data-show-when") !== s.state;
        });
        section.querySelectorAll("[data-show-in]").forEach(function (el) {
          el.hidden = el.getAttribute("data-show-in").split(" ").indexOf(s.state) < 0;
        });
        // Quick while work is under way; slower while waiting for staff or for room.
        var slow = s.state === "requested" || s.state === "queued";
        if (s.busy) setTimeout(function () { poll(section); }, slow ? 10000 : 1500);
      })
      .catch(function () { setTimeout(function () { poll(section); }, 5000); });
  }
  document.querySelectorAll("section.slice[data-busy=true]").forEach(function (s) {
    setTimeout(function () { poll(s); }, 1500);
  });
})();

// Copy buttons: a command copied whole, with no prompt, and "Copied" said where it was pressed.
(function () {
  "use strict";
  function copied(button, ok) {
    var was = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", was);
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(function () { button.textContent = was; }, 2000);
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button[data-copy]");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button, true); },
        function () { copied(button, false); });
      return;
    }
    // Plain HTTP on a lab network: the older way, through a selected text area.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
    document.body.removeChild(area);
    copied(button, ok);
  });
})();

// A field with a limit says how many characters are left once the user is near it, in words a
// screen reader announces politely.
(function () {
  "use strict";
  document.querySelectorAll("[maxlength][data-count]").forEach(function (field) {
    var max = parseInt(field.getAttribute("maxlength"), 10);
    var out = document.createElement("p");
    out.className = "hint count";
    out.id = field.id + "-count";
    out.setAttribute("aria-live", "polite");
    field.insertAdjacentElement("afterend", out);
    var described = field.getAttribute("aria-describedby");
    field.setAttribute("aria-describedby", (described ? described + " " : "") + out.id);
    function update() {
      var left = max - field.value.length;
      out.textContent = left + " of " + max + " characters left";
    }
    field.addEventListener("input", update);
    update();
  });
})();
