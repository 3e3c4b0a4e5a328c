// Loaded into every EverShop node process with NODE_OPTIONS=--require (tests/realshop).
// 1. Keeps the shop on loopback: net.Server.listen(port) binds 127.0.0.1 only.
// 2. Keeps it off the network: name lookups other than loopback fail (ENOTFOUND) and
//    connections to non-loopback addresses are refused, so `evershop seed` skips its photo
//    downloads without a packet leaving the machine.
// 3. Shop-level faults for the tests, read from the JSON file named by
//    STOREWATCH_FAULT_FILE on every request (no file or {} = healthy). Keys:
//    latency_ms: number        every page/API request waits this long before the shop sees it
//    checkout_500: true        /checkout* and POST /api/cart* (add to cart) answer 500
//    search_broken: true       /search runs with a keyword no product matches
//    corrupt_listing: "/path"  that page: product cards renamed to a raw template attribute,
//                              template error text and a 404 stylesheet link injected
//    max_in_flight: number     more concurrent page/API requests than this answer 500 "database is locked"
//                              (static assets are not counted: they need no database)
//                              (each refusal is logged with what was in flight: faults.json.refused)
//    Browser-only faults (the HTML stays 200; only a browser sees them):
//    js_bundle: true           the shop's own frontStore bundles are cut short (syntax error)
//    js_error: true            a script in every page makes add-to-cart throw (TypeError)
//    skimmer_dynamic: true     a "tag" in cart/checkout pages injects a script from
//                              http://localhost:PORT at run time (another origin)
//    slow_render: true         pages other than cart/checkout carry an "anti-flicker" tag
//                              (as A/B-testing tools ship) that hides the page for 6 s, so
//                              its largest paint comes 6 s late
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');

const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = Number(args[0]);
    const rest = args.slice(1).filter((a) => typeof a === 'function');
    return originalListen.call(this, port, '127.0.0.1', ...rest);
  }
  if (args[0] && typeof args[0] === 'object' && !args[0].path) {
    args[0] = Object.assign({}, args[0], { host: '127.0.0.1' });
  }
  return originalListen.apply(this, args);
};

const dns = require('dns');
const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

function offline(hostname) {
  const err = new Error(`getaddrinfo ENOTFOUND ${hostname} (storewatch tests: loopback only)`);
  err.code = 'ENOTFOUND';
  err.hostname = hostname;
  return err;
}
const originalLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  const cb = typeof options === 'function' ? options : callback;
  if (hostname && !LOOPBACK.test(hostname)) {
    process.nextTick(cb, offline(hostname));
    return {};
  }
  return originalLookup.apply(this, arguments);
};
const originalPromiseLookup = dns.promises.lookup;
dns.promises.lookup = function lookup(hostname, options) {
  if (hostname && !LOOPBACK.test(hostname)) return Promise.reject(offline(hostname));
  return originalPromiseLookup.call(this, hostname, options);
};
const originalConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];  // net.connect normalizes
  const opts = first && typeof first === 'object' ? first : null;
  const host = opts ? opts.host : (typeof args[1] === 'string' ? args[1] : undefined);
  if (host && net.isIP(host) && !LOOPBACK.test(host)) {
    process.nextTick(() => this.destroy(offline(host)));
    return this;
  }
  return originalConnect.apply(this, args);
};

const faultFile = process.env.STOREWATCH_FAULT_FILE;

function faults() {
  if (!faultFile) return {};
  try {
    return JSON.parse(fs.readFileSync(faultFile, 'utf8')) || {};
  } catch (e) {
    return {};
  }
}

function fail(res, status, text) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Connection': 'close' });
  res.end(`<!DOCTYPE html><html><head><title>Error</title></head><body><h1>${text}</h1></body></html>`);
}

function rewriteBody(req, res, rewrite) {
  // Buffer the whole answer, then hand it to rewrite(body, contentType) before it is sent.
  delete req.headers['accept-encoding'];
  const chunks = [];
  const origWrite = res.write;
  const origEnd = res.end;
  const origWriteHead = res.writeHead;
  res.writeHead = function writeHead(...args) {
    this.removeHeader && this.removeHeader('Content-Length');
    if (args.length > 1 && typeof args[args.length - 1] === 'object') {
      const headers = args[args.length - 1];
      for (const name of Object.keys(headers)) {
        if (name.toLowerCase() === 'content-length') delete headers[name];
      }
    }
    return origWriteHead.apply(this, args);
  };
  res.write = function write(chunk, encoding, cb) {
    if (chunk) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8'));
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
  void origWrite;
  res.end = function end(chunk, encoding, cb) {
    if (chunk && typeof chunk !== 'function') {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8'));
    }
    const type = String(this.getHeader('content-type') || '');
    const body = rewrite(Buffer.concat(chunks), type);
    if (!this.headersSent) this.removeHeader('Content-Length');  // writeHead dropped it already
    const cbFn = typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : cb;
    return origEnd.call(this, body, cbFn);
  };
}

function corruptListing(req, res) {
  // Break the HTML answer the way a broken template deploy would.
  rewriteBody(req, res, (buf, type) => {
    if (!type.includes('text/html')) return buf;
    return Buffer.from(buf.toString('utf8')
      .replace(/<head>/, '<head><link rel="stylesheet" href="/assets/theme-broken-0000.css">')
      .replace(/class="([^"]*)product-item([^"]*)"/g, 'data-broken="{{ product.card }}"')
      .replace(/<body([^>]*)>/, '<body$1>{% for product in category.products %}<p>Template error: Unknown variable &quot;products&quot; in listing.html line 12</p>'), 'utf8');
  });
}

// js_error: a third-party helper wraps fetch and throws when the cart is posted to.
const JS_ERROR_TAG = '<script>(function(){var f=window.fetch;window.fetch=function(u,o){' +
  'if(o&&String(o.method).toUpperCase()==="POST"&&/\\/api\\/cart/.test(String(u))){' +
  'return window.demoTracker.push({event:"add_to_cart"});}return f.apply(this,arguments);};})();</script>';

function skimmerTag(port) {
  // skimmer_dynamic: a compromised tag loads a "collector" from another origin at run time.
  return '<script>(function(){var s=document.createElement("script");' +
    `s.src="http://localhost:${port}/__storewatch_test/collect.js";document.head.appendChild(s);})();</script>`;
}

// slow_render: an A/B-testing "anti-flicker" snippet hides the page until its experiment
// script answers, here after 6 s; the HTML is unchanged otherwise and stays 200.
const SLOW_RENDER_TAG = '<style id="storewatch-anti-flicker">body{visibility:hidden!important}</style>' +
  '<script>setTimeout(function(){var s=document.getElementById("storewatch-anti-flicker");' +
  'if(s)s.remove();},6000);</script>';

function injectJsFaults(req, res, f, port) {
  const url = req.url || '/';
  if (f.js_bundle && /^\/assets\/frontStore\/.*\.js(\?|$)/.test(url)) {
    rewriteBody(req, res, (buf) => buf.subarray(0, Math.floor(buf.length * 2 / 3)));
    return;
  }
  const skim = f.skimmer_dynamic && /^\/(cart|checkout)(\/|\?|$)/.test(url);
  const hide = f.slow_render && !/^\/(cart|checkout|api)(\/|\?|$)/.test(url);
  if (!f.js_error && !skim && !hide) return;
  rewriteBody(req, res, (buf, type) => {
    if (!type.includes('text/html')) return buf;
    const tags = (f.js_error ? JS_ERROR_TAG : '') + (skim ? skimmerTag(port) : '') +
      (hide ? SLOW_RENDER_TAG : '');
    return Buffer.from(buf.toString('utf8').replace(/<head>/, '<head>' + tags), 'utf8');
  });
}

const inFlight = new Set();  // the page/API requests the shop is answering
const originalEmit = http.Server.prototype.emit;
http.Server.prototype.emit = function emit(event, req, res) {
  if (event !== 'request' || !faultFile) {
    return originalEmit.apply(this, arguments);
  }
  const args = arguments;
  const f = faults();
  const url = req.url || '/';
  const isAsset = url.startsWith('/assets/') || url.startsWith('/images/') || url === '/favicon.ico';
  // Only the shop's own pages and API hold one of its few database slots: static files are
  // served without the database (by nginx in front of a PHP shop). An asset download the
  // client stops early (storewatch reads 64 KB of a bundle) stays "in flight" here until Node
  // notices the closed socket, and counting it refused the client's next page now and then.
  if (!isAsset) {
    const mine = { url, method: req.method, port: req.socket.remotePort, at: Date.now() };
    if (f.max_in_flight && inFlight.size >= f.max_in_flight) {
      // what was in flight, for a test that did not expect the refusal (faults.json.refused)
      fs.appendFileSync(faultFile + '.refused', JSON.stringify(
        { at: Date.now(), refused: mine, inFlight: [...inFlight] }) + '\n');
      fail(res, 500, 'SQLSTATE[HY000]: General error: 5 database is locked');
      return true;
    }
    inFlight.add(mine);
    // A request holds its slot until the shop has produced its answer (like a PHP-FPM worker,
    // free once it has written the response), not until Node's 'finish', which can come after
    // the client has read the whole answer and sent its next request.
    const release = () => inFlight.delete(mine);
    const end = res.end;
    res.end = function endAndRelease() { release(); return end.apply(this, arguments); };
    res.on('close', release);
  }
  if (url.startsWith('/__storewatch_test/collect.js')) {
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end('window.__collected = [];');
    return true;
  }
  const run = () => {
    if (f.js_bundle || f.js_error || f.skimmer_dynamic || f.slow_render) {
      injectJsFaults(req, res, f, (this.address() || {}).port);
    }
    if (f.checkout_500 && (/^\/checkout(\/|\?|$)/.test(url) ||
        (req.method === 'POST' && url.startsWith('/api/cart')))) {
      fail(res, 500, 'Internal Server Error');
      return;
    }
    if (f.search_broken && /^\/search(\?|$)/.test(url)) {
      req.url = url.replace(/keyword=[^&]*/, 'keyword=zzqx-index-missing');
    }
    if (f.corrupt_listing && url.split('?')[0] === f.corrupt_listing) {
      corruptListing(req, res);
    }
    originalEmit.apply(this, args);
  };
  if (!isAsset && f.latency_ms) {
    setTimeout(run, f.latency_ms);
  } else {
    run();
  }
  return true;
};
