// Portal upload page: drag and drop, then progress while sending and while storing, then the report.
// Without this script the form posts as it is and the server answers with the report page.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var filesInput = document.getElementById("upload-files");
  var folderInput = document.getElementById("upload-folder");
  var drop = document.getElementById("upload-drop");
  var selection = document.getElementById("upload-selection");
  var errorBox = document.getElementById("upload-error");
  var progressBox = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-bar");
  var statusLine = document.getElementById("upload-status");
  var result = document.getElementById("upload-result");
  var submit = document.getElementById("upload-submit");
  var msg = form.dataset;
  var maxBytes = Number(msg.maxBytes);
  var lang = document.documentElement.lang || undefined;
  var dropped = []; // [{file, path}] from drag and drop

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : m;
    });
  }

  function size(bytes) {
    var units = ["bytes", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return bytes.toLocaleString(lang, { maximumFractionDigits: i ? 1 : 0 }) + " " + units[i];
  }

  function chosen() {
    var list = [];
    Array.prototype.forEach.call(filesInput.files, function (f) { list.push({ file: f, path: f.name }); });
    Array.prototype.forEach.call(folderInput.files, function (f) {
      list.push({ file: f, path: f.webkitRelativePath || f.name });
    });
    return list.concat(dropped);
  }

  function totalSize(list) {
    return list.reduce(function (sum, x) { return sum + x.file.size; }, 0);
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function describe() {
    var list = chosen();
    showError("");
    selection.textContent = list.length
      ? fill(msg.msgSelected, { count: list.length.toLocaleString(lang), size: size(totalSize(list)) })
      : "";
  }

  filesInput.addEventListener("change", describe);
  folderInput.addEventListener("change", describe);

  // --- drag and drop (folders too, with their relative paths, as the folder button gives them)

  function readEntry(entry, prefix, out) {
    if (entry.isFile) {
      return new Promise(function (resolve, reject) { entry.file(resolve, reject); }).then(function (file) {
        out.push({ file: file, path: prefix + file.name });
      });
    }
    if (!entry.isDirectory) return Promise.resolve();
    var reader = entry.createReader();
    var folder = prefix + entry.name + "/";
    function batch() { // readEntries answers in batches until an empty one
      return new Promise(function (resolve, reject) { reader.readEntries(resolve, reject); }).then(function (entries) {
        if (!entries.length) return undefined;
        return entries.reduce(function (p, child) {
          return p.then(function () { return readEntry(child, folder, out); });
        }, Promise.resolve()).then(batch);
      });
    }
    return batch();
  }

  drop.hidden = false;
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("active"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function () { drop.classList.remove("active"); });
  });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    var items = Array.prototype.slice.call((e.dataTransfer && e.dataTransfer.items) || []);
    // Entries must be taken now: the DataTransfer is emptied once this handler returns.
    var roots = items.map(function (item) { return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null; });
    var out = [];
    var done;
    if (roots.some(function (r) { return r; })) {
      done = roots.reduce(function (p, root) {
        return root ? p.then(function () { return readEntry(root, "", out); }) : p;
      }, Promise.resolve());
    } else {
      Array.prototype.forEach.call(e.dataTransfer.files, function (f) { out.push({ file: f, path: f.name }); });
      done = Promise.resolve();
    }
    done.then(function () { dropped = dropped.concat(out); describe(); },
              function () { showError(msg.msgFolderUnsupported); });
  });

  // --- sending, then the server's progress lines (one JSON object a line), then the report

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var list = chosen();
    if (!list.length) { showError(msg.msgNone); return; }
    var total = totalSize(list);
    if (total > maxBytes) { showError(fill(msg.msgTooLarge, { size: size(total) })); return; }
    showError("");

    var data = new FormData();
    var token = form.elements.namedItem("csrfmiddlewaretoken").value;
    data.append("csrfmiddlewaretoken", token);
    list.forEach(function (x) { data.append("files", x.file, x.path); });

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/x-ndjson");
    xhr.setRequestHeader("X-CSRFToken", token);

    progressBox.hidden = false;
    submit.disabled = true;
    bar.max = 100;
    bar.value = 0;
    var spokenAt = 0; // the status line is a live region: update it about once a second, not per event
    function say(text, force) {
      var now = Date.now();
      if (force || now - spokenAt > 1000) { statusLine.textContent = text; spokenAt = now; }
    }

    xhr.upload.addEventListener("progress", function (ev) {
      if (!ev.lengthComputable) return;
      var percent = Math.floor((ev.loaded * 100) / ev.total);
      bar.value = percent;
      say(fill(msg.msgUploading, { percent: percent + "%", sent: size(ev.loaded), total: size(ev.total) }),
          percent === 100);
    });

    var seen = 0;
    var finished = false;
    function handle(event) {
      if (event.event === "start" || event.event === "progress") {
        bar.max = Math.max(event.total, 1);
        bar.value = event.done || 0;
        say(fill(msg.msgProcessing, { done: (event.done || 0).toLocaleString(lang),
                                      total: event.total.toLocaleString(lang) }), event.event === "start");
      } else if (event.event === "done") {
        finished = true;
        bar.value = bar.max;
        result.innerHTML = event.html; // rendered and escaped by the server's template
        say(msg.msgDone, true);
        var heading = result.querySelector("h2");
        if (heading) heading.focus();
      } else if (event.event === "error") {
        finished = true;
        showError(event.message);
        progressBox.hidden = true;
      }
    }
    function consume() {
      var text = xhr.responseText;
      var end;
      while ((end = text.indexOf("\n", seen)) !== -1) {
        var line = text.slice(seen, end);
        seen = end + 1;
        if (!line) continue;
        try { handle(JSON.parse(line)); } catch (err) { /* not ours: reported as a failure below */ }
      }
    }
    function finish() {
      submit.disabled = false;
      if (!finished) {
        progressBox.hidden = true;
        showError(msg.msgFailed);
      } else {
        form.reset();
        dropped = [];
        selection.textContent = "";
      }
    }
    xhr.addEventListener("progress", consume);
    xhr.addEventListener("load", function () {
      if (xhr.status === 200) {
        consume();
      } else {
        try { handle(JSON.parse(xhr.responseText)); } catch (err) { /* e.g. a login page: failure */ }
      }
      finish();
    });
    xhr.addEventListener("error", finish);
    xhr.addEventListener("abort", finish);
    xhr.send(data);
  });
})();
