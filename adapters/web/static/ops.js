// The operations pages' script (tariffs, orders, revenue, alarms, operation log, users).
// Loaded without `defer` from the pages' head, so its Alpine components are registered before the
// layout's deferred Alpine starts. No inline script anywhere (the CSP forbids it): Alpine's CSP build
// evaluates no expressions, an x-data names a component registered here and x-on / x-bind / x-text
// name its properties; charts read their data from a data- attribute.
(function () {
  "use strict";

  // ---- the tariff strip editor: 48 <select>s (the form without script); here, brushes to paint them
  document.addEventListener("alpine:init", function () {
    window.Alpine.data("tariffStrip", function () {
      return {
        brush: "",
        painting: false,
        counts: { sharp: 0, peak: 0, flat: 0, valley: 0 },
        init: function () {
          var self = this;
          this.$root.classList.add("live");
          this.recount();
          window.addEventListener("pointerup", function () { self.painting = false; });
          window.addEventListener("pointercancel", function () { self.painting = false; });
        },
        recount: function () {
          var counts = { sharp: 0, peak: 0, flat: 0, valley: 0 };
          this.$root.querySelectorAll("select[data-slot]").forEach(function (select) {
            if (counts[select.value] !== undefined) { counts[select.value] += 1; }
            select.closest(".slot").setAttribute("data-tier", select.value);
          });
          this.counts = counts;
        },
        choose: function (event) {
          var tier = event.currentTarget.getAttribute("data-brush");
          this.brush = this.brush === tier ? "" : tier;
          this.$root.setAttribute("data-brush", this.brush);
          var brush = this.brush;
          this.$root.querySelectorAll("button[data-brush]").forEach(function (button) {
            button.setAttribute("aria-pressed", button.getAttribute("data-brush") === brush ? "true" : "false");
          });
        },
        paint: function (element) {
          var slot = element && element.closest ? element.closest(".slot") : null;
          if (!slot || !this.brush || !this.$root.contains(slot)) { return; }
          var select = slot.querySelector("select");
          if (select.value !== this.brush) {
            select.value = this.brush;
            this.recount();
          }
        },
        press: function (event) {
          if (!this.brush || event.button > 0) { return; }
          event.preventDefault();
          this.painting = true;
          this.paint(event.target);
        },
        drag: function (event) {
          // elementFromPoint: a touch keeps its first target, so ask what is under the finger now
          if (this.painting) { this.paint(document.elementFromPoint(event.clientX, event.clientY)); }
        },
        changed: function () { this.recount(); },
        get hours_sharp() { return String(this.counts.sharp / 2); },
        get hours_peak() { return String(this.counts.peak / 2); },
        get hours_flat() { return String(this.counts.flat / 2); },
        get hours_valley() { return String(this.counts.valley / 2); },
      };
    });
  });

  // ---- charts: <div data-chart='{"kind": "bar", "labels": [...], "series": [{"key", "name", "values"}]}'>
  // values are fen (integers); the axis and tooltips show yuan. Tooltips use richText: the HTML
  // tooltip writes style attributes, which the CSP refuses.
  function yuan(fen) { return (fen / 100).toFixed(2); }

  function chartOption(spec) {
    var colours = { electricity: "#0b6bcb", service: "#1f7a4d", sessions: "#a35200", total: "#7b3fb5" };
    var series = spec.series.map(function (s) {
      var line = s.type === "line";
      return {
        name: s.name, type: line ? "line" : "bar", stack: line ? undefined : "money", data: s.values,
        yAxisIndex: line ? 1 : 0, itemStyle: { color: colours[s.key] || undefined },
        tooltip: { valueFormatter: line ? String : yuan },
      };
    });
    var axes = [{ type: "value", axisLabel: { formatter: yuan }, name: spec.unit || "" }];
    if (spec.series.some(function (s) { return s.type === "line"; })) {
      axes.push({ type: "value", name: spec.count_unit || "", minInterval: 1, splitLine: { show: false } });
    }
    return {
      animation: false,
      grid: { left: 64, right: 48, top: 40, bottom: 56 },
      legend: { top: 0 },
      tooltip: { trigger: "axis", renderMode: "richText" },
      xAxis: { type: "category", data: spec.labels, axisLabel: { hideOverlap: true } },
      yAxis: axes,
      series: series,
    };
  }

  function drawCharts() {
    if (!window.echarts) { return; }
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var chart = window.echarts.init(element, null, { renderer: "canvas" });
      chart.setOption(chartOption(JSON.parse(element.getAttribute("data-chart"))));
      element.setAttribute("data-drawn", "yes");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", drawCharts);
})();
