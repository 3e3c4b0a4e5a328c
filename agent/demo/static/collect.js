/* Stands in for a card skimmer in the demo: it watches checkout inputs and sends nothing. */
(function () {
  "use strict";
  var seen = [];
  document.addEventListener("input", function (ev) {
    if (ev.target && ev.target.name) { seen.push(ev.target.name); }
  }, true);
  window.__demoCollector = seen;
})();
