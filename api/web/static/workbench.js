// Draws the dashboard's charts with Apache ECharts from the data the server put in the page.
// A click on a region's bar drills down to it (the tables link there too, without JavaScript).
(function () {
  "use strict";
  function draw() {
    var holder = document.getElementById("chart-data");
    if (!holder || !window.echarts) { return; }
    var data = JSON.parse(holder.textContent);
    var here = new URL(window.location.href);
    function chart(id, option, onClick) {
      var node = document.getElementById(id);
      if (!node) { return; }
      var existing = window.echarts.getInstanceByDom(node);
      if (existing) { existing.dispose(); }
      var instance = window.echarts.init(node, null, { renderer: "svg" });
      instance.setOption(Object.assign({ animation: false }, option));
      if (onClick) { instance.on("click", onClick); }
    }
    var funnelData = data.funnel.labels.map(function (label, i) {
      return { name: label, value: data.funnel.values[i] };
    });
    chart("chart-funnel", {
      tooltip: { trigger: "item" },
      series: [{ type: "funnel", sort: "none", minSize: "8%", data: funnelData,
                 label: { formatter: "{b}: {c}" } }]
    });
    chart("chart-payments", {
      tooltip: { trigger: "axis" },
      legend: { type: "scroll" },
      xAxis: { type: "category", data: data.payments.months },
      yAxis: { type: "value", name: "¥" },
      series: data.payments.series.map(function (s) {
        return { name: s.name, type: "bar", stack: "paid", data: s.values };
      })
    });
    chart("chart-overdue", {
      tooltip: { trigger: "axis" },
      legend: {},
      xAxis: { type: "category", data: data.overdue.regions },
      yAxis: { type: "value" },
      series: [
        { name: data.overdue.labels[0], type: "bar", data: data.overdue.overdue,
          itemStyle: { color: "#d4351c" } },
        { name: data.overdue.labels[1], type: "bar", data: data.overdue.open,
          itemStyle: { color: "#1d70b8" } }
      ]
    }, function (params) {
      here.searchParams.set("region", params.name);
      window.location.href = here.toString();
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
})();
