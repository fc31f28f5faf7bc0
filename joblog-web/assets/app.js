// Live tail of a running job's log: polls for lines after the last one shown and
// updates the status and summary when the run ends. No inline script (the page's CSP).
(function () {
  "use strict";
  var run = document.getElementById("run");
  if (!run || run.getAttribute("data-live") !== "true") return;
  var url = run.getAttribute("data-lines-url");
  var after = run.getAttribute("data-after") || "";
  var log = document.getElementById("log");
  var failures = 0, stopped = false, appended = 0;
  var MAX_APPENDED = 5000; // beyond this the page would get slow: stop and say so

  function text(id, value) {
    var el = document.getElementById(id);
    if (el && value !== undefined) el.textContent = value;
  }

  function poll() {
    fetch(url + "?after=" + encodeURIComponent(after), { credentials: "same-origin" })
      .then(function (r) {
        // A 4xx (the run was pruned, the credentials changed) will not heal: stop.
        if (r.status >= 400 && r.status < 500) { stopped = true; throw new Error(r.status); }
        if (!r.ok) throw new Error(r.status);
        failures = 0;
        return r.json();
      })
      .then(function (data) {
        var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        data.lines.forEach(function (l) {
          var div = document.createElement("div");
          div.className = "line " + l.level;
          var t = document.createElement("span"); t.className = "t"; t.textContent = l.time;
          var m = document.createElement("span"); m.className = "m"; m.textContent = l.message;
          div.appendChild(t); div.appendChild(document.createTextNode(" ")); div.appendChild(m);
          log.appendChild(div);
          after = String(l.id);
          appended += 1;
        });
        if (appended >= MAX_APPENDED) {
          var note = document.createElement("div");
          note.className = "line warn";
          note.textContent = "… live view paused after " + MAX_APPENDED + " new lines: reload the page to see the rest.";
          log.appendChild(note);
          return;
        }
        if (atBottom) log.scrollTop = log.scrollHeight;
        var status = document.getElementById("status");
        status.textContent = data.status;
        status.className = "badge badge-" + data.status;
        text("started", data.started); text("completed", data.completed); text("duration", data.duration);
        if (data.live || data.more) setTimeout(poll, data.more ? 50 : 1000);
      })
      .catch(function () {
        if (stopped) return;
        failures += 1;
        setTimeout(poll, Math.min(30000, 1000 * Math.pow(2, failures)));
      });
  }
  setTimeout(poll, 1000);
})();

// Countdowns to a job's next run: `<time data-countdown="RFC 3339">` shows the absolute
// time without JS; with it, "in 4m 03s" (the absolute time stays in the tooltip).
(function () {
  "use strict";
  var els = document.querySelectorAll("time[data-countdown]");
  if (!els.length) return;
  function fmt(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + ("0" + (s % 60)).slice(-2) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + ("0" + Math.floor(s % 3600 / 60)).slice(-2) + "m";
    return Math.floor(s / 86400) + "d " + ("0" + Math.floor(s % 86400 / 3600)).slice(-2) + "h";
  }
  function tick() {
    var now = Date.now();
    for (var i = 0; i < els.length; i++) {
      var at = Date.parse(els[i].getAttribute("data-countdown"));
      if (isNaN(at)) continue;
      var s = Math.round((at - now) / 1000);
      els[i].textContent = s > 0 ? "in " + fmt(s) : "due now";
    }
  }
  tick();
  setInterval(tick, 1000);
})();
