/* Demo Outfitters: progressive enhancements for the storewatch demo storefront. */
(function () {
  "use strict";

  function estimateShipping(form) {
    var out = document.getElementById("shipping-estimate-result");
    var body = JSON.stringify({
      country_id: form.elements.country_id.value,
      postcode: form.elements.postcode.value
    });
    fetch("/checkout/estimate-shipping", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: body
    })
      .then(function (r) { return r.json(); })
      .then(function (rates) {
        if (!out) { return; }
        if (!Array.isArray(rates) || rates.length === 0) {
          out.textContent = "No shipping methods available for this address.";
          return;
        }
        out.textContent = rates.map(function (r) {
          return r.carrier_title + " (" + r.method_title + "): $" + Number(r.amount).toFixed(2);
        }).join(" | ");
      })
      .catch(function () { if (out) { out.textContent = "Could not estimate shipping."; } });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("shipping-estimate-form");
    if (form) {
      form.addEventListener("submit", function (ev) { ev.preventDefault(); estimateShipping(form); });
    }
    document.documentElement.classList.add("js");
  });
})();
