// The 经营大屏's own script (no inline script anywhere: the CSP forbids it). htmx swaps the sections the
// stream sends; this draws the 24-hour power curve with ECharts from the chart element's data-power
// (the figures the page was rendered with), then from each "screen-power" event's JSON data.
(function () {
  "use strict";
  var chart = null;

  function draw(data) {
    if (!chart || !data) { return; }
    chart.setOption({
      series: [{ name: data.name, data: data.kw }],
      xAxis: { data: data.labels },
    });
  }

  function start() {
    var holder = document.getElementById("power-chart");
    if (!holder || !window.echarts) { return; }
    chart = window.echarts.init(holder, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      textStyle: { color: "#e6f0ff", fontSize: 14 },
      grid: { left: 56, right: 16, top: 24, bottom: 32 },
      tooltip: { trigger: "axis", renderMode: "richText" },  // the HTML tooltip writes style attributes: CSP
      xAxis: { type: "category", boundaryGap: false, data: [],
               axisLabel: { color: "#8fa7c7", interval: 11 }, axisLine: { lineStyle: { color: "#1d3557" } } },
      yAxis: { type: "value", name: "kW", nameTextStyle: { color: "#8fa7c7" },
               axisLabel: { color: "#8fa7c7" }, splitLine: { lineStyle: { color: "#1d3557" } } },
      series: [{ type: "line", smooth: true, showSymbol: false, data: [],
                 lineStyle: { width: 3, color: "#4cc9f0" }, areaStyle: { color: "rgba(76,201,240,0.18)" } }],
    });
    draw(JSON.parse(holder.getAttribute("data-power") || "null"));
    if (window.ResizeObserver) {  // the chart follows its box (a window resized, a phone turned)
      new window.ResizeObserver(function () { chart.resize(); }).observe(holder);
    } else {
      window.addEventListener("resize", function () { chart.resize(); });
    }
  }

  document.addEventListener("DOMContentLoaded", start);

  document.addEventListener("htmx:sseMessage", function (event) {
    var type = event.detail && event.detail.type;
    if (type === "screen-power") {
      draw(JSON.parse(event.detail.data));
      document.getElementById("power-chart").setAttribute("data-power", event.detail.data);
    } else if (type === "signed-out") {
      window.location.assign("/console/login");
    }
  });
})();
