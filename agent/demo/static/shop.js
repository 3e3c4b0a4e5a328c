/* Demo Outfitters, JavaScript mode: the catalog, cart and checkout are rendered here. */
(function () {
  "use strict";
  var RENDER_DELAY_MS = 0;
  var FAULT_ADD_ERROR = false;

  function $(sel, root) { return (root || document).querySelector(sel); }
  function money(n) { return "$" + Number(n).toFixed(2); }
  function text(el, value) { el.textContent = value; return el; }

  function api(path, options) {
    var opts = Object.assign({
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json" }
    }, options || {});
    return fetch(path, opts).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status + " for " + path); }
      return r.json();
    });
  }

  function setCount(qty) {
    var counter = $(".minicart .counter");
    if (counter) { text(counter, String(qty)); }
  }

  function say(app, message) {
    var box = $(".messages", app) || app.appendChild(document.createElement("div"));
    box.className = "messages";
    text(box, message);
  }

  function addToCart(app, product) {
    if (FAULT_ADD_ERROR) {
      // A third-party tracker call that throws before the cart request is sent.
      window.demoTracker.push({ event: "add_to_cart", sku: product.sku });
    }
    return api("/api/cart/add", { method: "POST", body: JSON.stringify({ sku: product.sku, qty: 1 }) })
      .then(function (cart) {
        setCount(cart.items_qty);
        say(app, "You added " + product.name + " to your shopping cart.");
      });
  }

  function renderHome(app) {
    return api("/api/products").then(function (data) {
      app.innerHTML = '<section class="hero"><h1 class="page-title"></h1><p class="lead"></p>' +
        '</section><ol class="product-grid"></ol>';
      text($(".page-title", app), "Welcome to Demo Outfitters");
      text($(".lead", app), "Trail, studio and everyday wear, tested by people who sweat. " +
        "Every product below is rendered in your browser from the shop's JSON API.");
      var grid = $(".product-grid", app);
      data.products.forEach(function (p) {
        var li = document.createElement("li");
        li.className = "product-item";
        li.setAttribute("data-sku", p.sku);
        li.innerHTML = '<strong class="product-name"></strong> <span class="price"></span> ' +
          '<button type="button" class="action tocart">Add to Cart</button>';
        text($(".product-name", li), p.name);
        text($(".price", li), money(p.price));
        $(".tocart", li).addEventListener("click", function () { addToCart(app, p); });
        grid.appendChild(li);
      });
    });
  }

  function renderCart(app) {
    return api("/api/cart").then(function (cart) {
      setCount(cart.items_qty);
      if (!cart.lines.length) {
        app.innerHTML = '<h1 class="page-title">Shopping Cart</h1>' +
          '<div class="cart-empty"><p>You have no items in your shopping cart.</p></div>';
        return;
      }
      app.innerHTML = '<h1 class="page-title">Shopping Cart</h1><table class="cart-table">' +
        '<tbody></tbody></table><p>Subtotal: <span class="subtotal"></span></p>' +
        '<a class="action checkout" href="/checkout">Proceed to Checkout</a>';
      var body = $("tbody", app);
      cart.lines.forEach(function (line) {
        var tr = document.createElement("tr");
        tr.className = "cart-item";
        tr.setAttribute("data-sku", line.sku);
        tr.innerHTML = '<td class="item-name"></td><td class="item-qty"></td><td class="item-price"></td>';
        text($(".item-name", tr), line.name);
        text($(".item-qty", tr), String(line.qty));
        text($(".item-price", tr), money(line.row_total));
        body.appendChild(tr);
      });
      text($(".subtotal", app), money(cart.subtotal));
    });
  }

  function renderCheckout(app) {
    return api("/api/checkout").then(function (co) {
      setCount(co.items_qty);
      if (!co.items_qty) { window.location.assign("/cart"); return; }
      app.innerHTML = '<h1 class="page-title">Checkout</h1>' +
        '<form id="co-shipping-method-form"><fieldset><legend>Shipping Methods</legend></fieldset></form>' +
        '<section id="checkout-payment-method-load"><h2>Payment Method</h2></section>' +
        '<button type="button" id="place-order" class="action primary checkout">Place Order</button>' +
        '<p class="message notice demo-notice">This is a demo store: orders are not accepted.</p>';
      var fieldset = $("fieldset", app);
      co.shipping.forEach(function (rate, i) {
        var label = document.createElement("label");
        label.innerHTML = '<input type="radio" name="shipping_method"> <span></span>';
        var input = $("input", label);
        input.value = rate.carrier_code + "_" + rate.method_code;
        input.checked = i === 0;
        text($("span", label), rate.carrier_title + " (" + rate.method_title + "): " + money(rate.amount));
        fieldset.appendChild(label);
      });
      var payment = $("#checkout-payment-method-load", app);
      if (!co.payment.length) {
        payment.appendChild(text(document.createElement("div"), "No Payment method available."));
      }
      co.payment.forEach(function (m) {
        var div = document.createElement("div");
        div.className = "payment-method";
        div.setAttribute("data-code", m.code);
        payment.appendChild(text(div, m.title));
      });
      $("#place-order", app).addEventListener("click", function () {
        api("/api/order", { method: "POST", body: "{}" }).catch(function (e) { say(app, String(e)); });
      });
    });
  }

  var VIEWS = { home: renderHome, cart: renderCart, checkout: renderCheckout };

  function start() {
    var app = document.getElementById("app");
    if (!app) { return; }
    var view = VIEWS[app.getAttribute("data-view")];
    api("/api/cart").then(function (cart) { setCount(cart.items_qty); });
    // slow_render: the home page's catalog (its largest paint) comes late
    window.setTimeout(function () {
      view(app).then(function () { app.setAttribute("data-ready", "1"); })
        .catch(function (e) { say(app, "Sorry, something went wrong: " + e.message); });
    }, view === renderHome ? RENDER_DELAY_MS : 0);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
