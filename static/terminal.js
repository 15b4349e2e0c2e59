// The terminal page: xterm.js on a websocket to a shell in the slice. Binary frames carry the
// terminal's bytes both ways; a text frame {"cols", "rows"} says the window changed size.
(function () {
  "use strict";
  var box = document.getElementById("terminal");
  var status = document.getElementById("terminal-status");
  if (!box || typeof Terminal === "undefined") return;
  var term = new Terminal({ cursorBlink: true, fontSize: 15, scrollback: 5000 });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var url = scheme + location.host + box.getAttribute("data-socket") +
    "&cols=" + term.cols + "&rows=" + term.rows;
  var ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  var encoder = new TextEncoder();
  ws.onopen = function () { status.textContent = "Connected."; term.focus(); };
  ws.onmessage = function (e) {
    term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
  };
  ws.onclose = function () {
    status.textContent = "The terminal is closed. Reload the page to open another.";
    term.options.disableStdin = true;
  };
  term.onData(function (d) { if (ws.readyState === 1) ws.send(encoder.encode(d)); });
  term.onResize(function (s) {
    if (ws.readyState === 1) ws.send(JSON.stringify({ cols: s.cols, rows: s.rows }));
  });
  window.addEventListener("resize", function () { fit.fit(); });
})();
