// Firebreak web view: append new timeline events while the incident is open.
// Polls the page's JSON endpoint for events after the last id it has, and adds each as
// text (textContent): nothing from the server is ever parsed as HTML.
(function () {
  "use strict";
  var list = document.getElementById("timeline");
  if (!list || list.dataset.open !== "1") {
    return;
  }
  var live = document.getElementById("live");
  var after = Number(list.dataset.after) || 0;
  var url = list.dataset.events;
  var every = 2000;
  var failures = 0;

  function say(text) {
    if (live) {
      live.textContent = text;
    }
  }

  function append(event) {
    var item = document.createElement("li");
    item.className = "event fresh kind-" + String(event.kind).replace(/[^a-z_]/g, "");
    item.dataset.id = String(event.id);
    var time = document.createElement("time");
    time.dateTime = event.at;
    time.textContent = event.time;
    var text = document.createElement("span");
    text.textContent = event.text;
    item.appendChild(time);
    item.appendChild(document.createTextNode(" "));
    item.appendChild(text);
    list.appendChild(item);
  }

  function poll() {
    fetch(url + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          say("Signed out: reload the page to sign in again.");
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (body) {
        if (body === null) {
          return;
        }
        failures = 0;
        body.events.forEach(function (event) {
          if (event.id > after) {
            append(event);
            after = event.id;
          }
        });
        list.dataset.after = String(after);
        if (!body.open) {
          say("The incident is resolved; the timeline no longer refreshes.");
          return;
        }
        say("Live: refreshing every " + every / 1000 + " s.");
        window.setTimeout(poll, every);
      })
      .catch(function () {
        failures += 1;
        say("Could not refresh (try " + failures + "); trying again.");
        window.setTimeout(poll, Math.min(30000, every * Math.pow(2, failures)));
      });
  }

  window.setTimeout(poll, every);
})();
