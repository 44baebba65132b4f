/* Siyu console behaviour: charts, auto-submitting selects, copy buttons.
   No inline scripts (the CSP forbids them); runs on first load and after every htmx swap. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var echartsWaiters = null;

  function withECharts(done) {
    if (window.echarts) { done(window.echarts); return; }
    if (echartsWaiters) { echartsWaiters.push(done); return; }
    echartsWaiters = [done];
    var script = document.createElement("script");
    script.src = "/static/vendor/echarts.min.js";
    script.onload = function () {
      var waiting = echartsWaiters; echartsWaiters = null;
      waiting.forEach(function (fn) { fn(window.echarts); });
    };
    document.head.appendChild(script);
  }

  function initCharts(root) {
    var nodes = root.querySelectorAll ? root.querySelectorAll("[data-chart]") : [];
    if (!nodes.length) return;
    withECharts(function (echarts) {
      nodes.forEach(function (el) {
        if (el.dataset.chartReady) return;
        el.dataset.chartReady = "1";
        var chart = echarts.init(el, null, { renderer: "svg" });
        chart.setOption(JSON.parse(el.dataset.chart));
        if (el.dataset.links) {
          // a heatmap cell [x, y, value] opens the customers behind it
          var links = JSON.parse(el.dataset.links);
          chart.on("click", function (p) {
            var d = p.data || [];
            var url = links[d[1]] && links[d[1]][d[0]];
            if (url) window.location.assign(url);
          });
        }
      });
    });
  }

  function initAutosubmit(root) {
    var nodes = root.querySelectorAll ? root.querySelectorAll("select[data-autosubmit]") : [];
    nodes.forEach(function (select) {
      if (select.dataset.autosubmitReady) return;
      select.dataset.autosubmitReady = "1";
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
  }

  // Plain-HTTP pages (an intranet, an in-app browser) have no clipboard API: copy by hand.
  function copyByHand(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.dataset.copy);
    if (!source) return;
    var text = source.textContent.trim();
    var copied = function () { button.textContent = button.dataset.copied || "✓"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(copied, function () { copyByHand(text) && copied(); });
    } else if (copyByHand(text)) {
      copied();
    }
  });

  window.addEventListener("resize", function () {
    if (!window.echarts) return;
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var chart = window.echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  });

  function init(root) { initCharts(root); initAutosubmit(root); }

  if (window.htmx) {
    window.htmx.onLoad(init);
  } else {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  }
})();
