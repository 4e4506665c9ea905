// Draws the dashboard's charts with Chart.js: each <canvas data-chart="name"> takes its data from
// the JSON element "<canvas id>-data" that the server wrote (labels and datasets, as Chart.js reads them).
(function () {
  "use strict";
  if (typeof Chart === "undefined") { return; }

  var style = getComputedStyle(document.documentElement);
  var css = function (name, fallback) { return (style.getPropertyValue(name) || "").trim() || fallback; };
  var text = css("--body-quiet-color", "#666");
  var grid = css("--hairline-color", "#e8e8e8");
  Chart.defaults.color = text;
  Chart.defaults.borderColor = grid;
  Chart.defaults.font.family = css("--font-family-primary", "sans-serif");
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

  // Pairs per sender number: received (lighter), sent (darker).
  var PAIRS = [["#9cc3e6", "#2f6fb0"], ["#a8dbb8", "#128c4a"], ["#f5c98a", "#d9822b"], ["#d4b8e8", "#7d4fb0"], ["#f2aaa5", "#c0392b"]];
  var STEPS = { sent: "#2f6fb0", delivered: "#27a060", read: "#128c4a", failed: "#c0392b" };
  var CHANNELS = ["#128c4a", "#2f6fb0", "#d9822b"];

  var dayLabel = function (iso) {
    var parts = iso.split("-");
    return new Date(Date.UTC(+parts[0], +parts[1] - 1, +parts[2]))
      .toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
  };
  var bytesLabel = function (value) {
    var units = ["B", "KB", "MB", "GB", "TB"], index = 0;
    while (value >= 1000 && index < units.length - 1) { value /= 1000; index += 1; }
    return (index ? value.toFixed(value < 10 ? 1 : 0) : value) + " " + units[index];
  };
  var dayTitle = function (items) { return items.length ? dayLabel(items[0].label) : ""; };
  var days = { ticks: { callback: function (value) { return dayLabel(this.getLabelForValue(value)); }, maxRotation: 0, autoSkipPadding: 12 } };
  var count = { beginAtZero: true, ticks: { precision: 0 } };

  var builders = {
    messages: function (data) {
      var numbers = {};
      data.datasets.forEach(function (dataset) {
        var number = dataset.label.replace(/ (received|sent)$/, "");
        if (!(number in numbers)) { numbers[number] = Object.keys(numbers).length % PAIRS.length; }
        dataset.backgroundColor = PAIRS[numbers[number]][dataset.stack === "inbound" ? 0 : 1];
      });
      return {
        type: "bar", data: data,
        options: {
          scales: { x: Object.assign({ stacked: true }, days), y: Object.assign({ stacked: true }, count) },
          plugins: { tooltip: { mode: "index", callbacks: { title: dayTitle } } },
        },
      };
    },
    funnel: function (data) {
      data.datasets[0].backgroundColor = [STEPS.sent, STEPS.delivered, STEPS.read, STEPS.failed];
      data.datasets[0].maxBarThickness = 72;
      var sent = data.datasets[0].data[0];
      return {
        type: "bar", data: data,
        options: {
          scales: { y: count },
          plugins: {
            legend: { display: false },
            tooltip: { callbacks: { label: function (item) {
              var share = sent ? " (" + (100 * item.raw / sent).toFixed(1) + "% of sent)" : "";
              return item.raw + " messages" + (item.dataIndex ? share : "");
            } } },
          },
        },
      };
    },
    failures: function (data) {
      data.datasets[0].backgroundColor = STEPS.failed;
      data.datasets[0].maxBarThickness = 32;
      var twoLines = function (value) {  // "131047: Re-engagement message" → the code above its title
        var label = this.getLabelForValue(value), colon = label.indexOf(": ");
        return colon < 0 ? label : [label.slice(0, colon), label.slice(colon + 2)];
      };
      return {
        type: "bar", data: data,
        options: {
          indexAxis: "y",
          scales: { x: count, y: { ticks: { callback: twoLines } } },
          plugins: { legend: { display: false } },
        },
      };
    },
    campaigns: function (data) {
      data.datasets.forEach(function (dataset) { dataset.backgroundColor = STEPS[dataset.key]; dataset.maxBarThickness = 48; });
      return {
        type: "bar", data: data,
        options: {
          scales: { y: { beginAtZero: true, max: 100, ticks: { callback: function (value) { return value + "%"; } } } },
          plugins: { tooltip: { mode: "index", callbacks: {
            title: function (items) {
              return items.length ? items[0].label + " (" + data.recipients[items[0].dataIndex] + " recipients)" : "";
            },
            label: function (item) { return item.dataset.key + ": " + item.raw + "%"; },
          } } },
        },
      };
    },
    opt_outs: function (data) {
      data.datasets.forEach(function (dataset, index) {
        dataset.backgroundColor = CHANNELS[index % CHANNELS.length];
        dataset.maxBarThickness = 28;
      });
      return {
        type: "bar", data: data,
        options: {
          scales: { x: Object.assign({ stacked: true }, days), y: Object.assign({ stacked: true }, count) },
          plugins: { tooltip: { mode: "index", callbacks: { title: dayTitle } } },
        },
      };
    },
    archival: function (data) {
      var messages = data.datasets[0], size = data.datasets[1];
      messages.backgroundColor = "#2f6fb0";
      messages.yAxisID = "y";
      messages.maxBarThickness = 28;
      // The size as a point on the days that had a run only: a line through the empty days would spike.
      size.data = size.data.map(function (value) { return value || null; });
      Object.assign(size, {
        type: "line", yAxisID: "bytes", showLine: false, borderColor: "#d9822b", backgroundColor: "#d9822b",
        pointStyle: "rectRot", pointRadius: 6, pointHoverRadius: 8,
      });
      return {
        type: "bar", data: data,
        options: {
          scales: {
            x: days, y: count,
            bytes: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, ticks: { callback: bytesLabel } },
          },
          plugins: { tooltip: { mode: "index", callbacks: {
            title: dayTitle,
            label: function (item) { return item.dataset.yAxisID === "bytes" ? "Archive size: " + bytesLabel(item.raw) : item.dataset.label + ": " + item.raw; },
          } } },
        },
      };
    },
  };

  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var source = document.getElementById(canvas.id + "-data");
    var build = builders[canvas.dataset.chart];
    if (source && build) { new Chart(canvas, build(JSON.parse(source.textContent))); }
  });

  var number = document.getElementById("wharf-number");
  if (number) { number.addEventListener("change", function () { number.form.submit(); }); }
})();
