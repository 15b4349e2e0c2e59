// Keeps the dashboard's slices up to date while they change, without reloading the page: each
// busy card listens to its slice's events (sent by the server as each step happens) or, where
// a browser cannot, asks for its state now and then. Only what changed is touched, and a change
// of state is said once in the card's status line for screen readers.
(function () {
  "use strict";
  function set(section, field, value) {
    var el = section.querySelector('[data-field="' + field + '"]');
    if (!el) return;
    var text = value == null || value === "" ? (field === "node" || field === "ip" ? "—" : "") : String(value);
    if (el.textContent !== text) el.textContent = text;
    if (field === "step" || field === "place" || field === "failure" || field === "pending") el.hidden = !value;
  }
  function apply(section, s) {
    var badge = section.querySelector('[data-field="state"]');
    if (badge.textContent !== s.state) {
      badge.textContent = s.state;
      badge.className = "badge state-" + s.state;
      var said = section.querySelector('[data-field="announce"]');
      if (said) said.textContent = section.getAttribute("data-name") + " is now " + s.state + ".";
    }
    set(section, "step", s.step);
    // Something is being done to it ("Stopping…"): said, and its buttons wait.
    set(section, "pending", s.pending);
    section.querySelectorAll(".actions > form button").forEach(function (b) { b.disabled = !!s.pending; });
    var bar = section.querySelector("[data-field-progress]");
    if (bar) {
      bar.hidden = !s.progress;
      if (s.progress && bar.value !== s.progress) { bar.value = s.progress; bar.textContent = s.progress + "%"; }
    }
    set(section, "place", s.place ? "No node has room right now: you are number " + s.place + " in the queue." : "");
    set(section, "failure", s.state === "failed" ? s.failure : "");
    set(section, "node", s.node);
    set(section, "ip", s.ip);
    var events = section.querySelector('[data-field="events"]');
    var key = s.events.map(function (e) { return e.at + " " + e.message; }).join("\n");
    if (events.getAttribute("data-key") !== key) {
      events.setAttribute("data-key", key);
      events.textContent = "";
      s.events.forEach(function (e) {
        var li = document.createElement("li");
        var t = document.createElement("time");
        t.setAttribute("datetime", new Date(e.at * 1000).toISOString());
        t.textContent = e.text;
        li.appendChild(t);
        li.appendChild(document.createTextNode(" " + e.message));
        events.appendChild(li);
      });
      if (window.slicesTimes) window.slicesTimes(events);
    }
    section.querySelectorAll("[data-show-when]").forEach(function (el) {
      el.hidden = el.getAttribute("data-show-when") !== s.state;
    });
    section.querySelectorAll("[data-show-in]").forEach(function (el) {
      el.hidden = el.getAttribute("data-show-in").split(" ").indexOf(s.state) < 0;
    });
  }
  function poll(section) {
    var id = section.getAttribute("data-slice");
    fetch("/slices/" + id + "/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        apply(section, s);
        if (s.busy) setTimeout(function () { poll(section); }, 2000);
      })
      .catch(function () { setTimeout(function () { poll(section); }, 5000); });
  }
  function listen(section) {
    if (!window.EventSource) { poll(section); return; }
    var source = new EventSource("/slices/" + section.getAttribute("data-slice") + "/live");
    var heard = false;
    source.onmessage = function (m) {
      heard = true;
      var s = JSON.parse(m.data);
      apply(section, s);
      if (!s.busy) source.close();
    };
    // The browser opens it again by itself; one that never answered falls back to asking.
    source.onerror = function () {
      if (!heard) { source.close(); setTimeout(function () { poll(section); }, 2000); }
    };
  }
  document.querySelectorAll("section.slice[data-busy=true]").forEach(listen);
})();

// Times: written by the server in UTC; shown in the viewer's own zone, as "3 min ago" when
// recent, with the exact time on hover. Kept fresh while the page stays open.
(function () {
  "use strict";
  var rel = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var steps = [[60, "second"], [3600, "minute"], [86400, "hour"], [604800, "day"]];
  function show(t) {
    var at = Date.parse(t.getAttribute("datetime"));
    if (isNaN(at)) return;
    var d = new Date(at);
    t.title = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
    var secs = (at - Date.now()) / 1000;
    var abs = Math.abs(secs);
    var text = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    if (rel && abs < 604800) {
      if (abs < 45) text = rel.format(0, "second");
      else for (var i = 1; i < steps.length; i++) {
        if (abs < steps[i][0]) { text = rel.format(Math.round(secs / steps[i - 1][0]), steps[i][1]); break; }
      }
    }
    if (t.textContent !== text) t.textContent = text;
  }
  function all(root) { (root || document).querySelectorAll("time[datetime]").forEach(show); }
  window.slicesTimes = all;
  all();
  setInterval(all, 30000);
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

// A table (or text) wider than the screen scrolls in its box: the box then takes the keyboard's focus,
// so it can be scrolled without a mouse (and only then: no extra tab stops on a wide screen).
(function () {
  "use strict";
  function mark() {
    document.querySelectorAll(".table-wrap, pre").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth) {
        box.setAttribute("tabindex", "0");
        if (!box.hasAttribute("aria-label")) box.setAttribute("aria-label", (box.tagName === "PRE" ? "Text" : "Table") + " (scrolls sideways)");
        box.setAttribute("role", "region");
      } else {
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
      }
    });
  }
  mark();
  window.addEventListener("resize", mark);
})();
