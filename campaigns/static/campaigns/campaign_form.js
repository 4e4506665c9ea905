/* The campaign form (campaigns/admin_form.py): the chosen channel's fields only, a template's
   parameters as labelled inputs with placeholder chips, the audience as tags and filter rows, and
   a live preview and audience count read from the server for the unsaved form. Without this
   script the form still works: the JSON fields stay visible. */
(function () {
  "use strict";
  var configNode = document.getElementById("campaign-form-config");
  var form = document.getElementById("campaign_form");
  if (!configNode || !form || !form.elements.channel) { return; }
  var config = JSON.parse(configNode.textContent);

  var CHANNEL_FIELDS = {
    WHATSAPP: ["phone_number", "template", "template_parameters"],
    EMAIL: ["subject", "body"],
    SMS: ["body"]
  };
  var CONTENT_FIELDS = ["phone_number", "template", "template_parameters", "subject", "body"];

  function row(name) { return form.querySelector(".form-row.field-" + name); }
  function field(name) { return form.elements[name]; }
  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function debounce(fn, ms) {
    var timer = null;
    return function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(fn, ms);
    };
  }
  function formState() {
    var data = new FormData(form);
    data.delete("audience_csv");
    if (config.campaign) { data.set("campaign", config.campaign); }
    return data;
  }
  function post(url, data) {
    return fetch(url, { method: "POST", body: data, credentials: "same-origin" }).then(function (answer) {
      return answer.json().then(function (body) { return { ok: answer.ok, body: body }; });
    });
  }

  /* -- placeholders: chips inserting into the text field last typed in -- */
  var lastText = null;
  form.addEventListener("focusin", function (event) {
    var target = event.target;
    if (target.matches && target.matches("input[type=text], textarea") && !target.closest(".campaign-filters")) {
      lastText = target;
    }
  });
  function insert(text, fallback) {
    var target = lastText && document.contains(lastText) && lastText.offsetParent !== null ? lastText : fallback();
    if (!target) { return; }
    var start = target.selectionStart === null ? target.value.length : target.selectionStart;
    var end = target.selectionEnd === null ? target.value.length : target.selectionEnd;
    target.value = target.value.slice(0, start) + text + target.value.slice(end);
    target.focus();
    target.setSelectionRange(start + text.length, start + text.length);
    target.dispatchEvent(new Event("input", { bubbles: true }));
  }
  function chips(fallback) {
    var bar = make("div", "campaign-chips");
    bar.appendChild(make("span", "campaign-chips-label", "Insert"));
    config.placeholders.forEach(function (placeholder) {
      var chip = make("button", "campaign-chip", placeholder);
      chip.type = "button";
      chip.title = "Insert " + placeholder + " where the cursor is";
      chip.addEventListener("mousedown", function (event) { event.preventDefault(); });  // keeps the cursor
      chip.addEventListener("click", function () { insert(placeholder, fallback); });
      bar.appendChild(chip);
    });
    return bar;
  }

  /* -- the template's parameters -- */
  var parametersJson = form.querySelector(".campaign-parameters-json");
  var parametersBox = make("div", "campaign-parameters");
  var values = config.values || {};
  if (parametersJson) {
    parametersJson.value = "{}";  // the labelled inputs below are what counts now
    parametersJson.hidden = true;
    parametersJson.parentNode.appendChild(parametersBox);
  }
  function parametersDraw() {
    Array.prototype.forEach.call(parametersBox.querySelectorAll("input[data-slot]"), function (input) {
      values[input.dataset.slot] = input.value;
    });
    parametersBox.textContent = "";
    var template = field("template") && config.templates[field("template").value];
    if (!template) {
      parametersBox.appendChild(make("p", "campaign-quiet", "Choose a template to fill in its parameters."));
      return;
    }
    if (!template.slots.length) {
      parametersBox.appendChild(make("p", "campaign-quiet", "This template takes no parameters."));
      return;
    }
    template.slots.forEach(function (slot) {
      var line = make("div", "campaign-parameter");
      var label = make("label", "campaign-parameter-name", slot.label);
      var input = make("input", "vTextField");
      input.type = "text";
      input.id = "id_param-" + slot.key;
      label.htmlFor = input.id;
      input.name = "param-" + slot.key;
      input.dataset.slot = slot.key;
      input.value = values[slot.key] || "";
      input.placeholder = slot.example ? "e.g. " + slot.example : "";
      line.appendChild(label);
      line.appendChild(input);
      parametersBox.appendChild(line);
    });
    parametersBox.appendChild(chips(function () { return parametersBox.querySelector("input"); }));
  }

  /* -- email and SMS: chips and the SMS counter under the body -- */
  var body = field("body");
  var smsCount = make("div", "campaign-sms-count");
  if (body && row("body")) {
    var bodyBox = body.closest(".flex-container").parentNode;
    bodyBox.appendChild(chips(function () { return body; }));
    bodyBox.appendChild(smsCount);
  }
  var GSM = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM_EXTENDED = "^{}\\[~]|€\f";
  function smsCountShow() {
    if (!body) { return; }
    smsCount.hidden = field("channel").value !== "SMS";
    var text = body.value, units = 0, gsm = true;
    for (var i = 0; i < text.length; i++) {
      if (GSM.indexOf(text[i]) >= 0) { units += 1; } else if (GSM_EXTENDED.indexOf(text[i]) >= 0) { units += 2; } else { gsm = false; }
    }
    if (!gsm) { units = text.length; }
    var single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    var segments = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / part);
    smsCount.textContent = units + " characters · " + segments + " segment" + (segments === 1 ? "" : "s") +
      " (" + (gsm ? "GSM-7" : "Unicode") + "), before placeholders are filled";
  }

  /* -- the channel: only its fields show -- */
  function channelShow() {
    var shown = CHANNEL_FIELDS[field("channel").value] || CONTENT_FIELDS;
    CONTENT_FIELDS.forEach(function (name) {
      var node = row(name);
      if (node) { node.hidden = shown.indexOf(name) < 0; }
    });
    smsCountShow();
  }

  /* -- tags: a search over the checkboxes -- */
  var tags = form.querySelector(".campaign-tags");
  if (tags) {
    var boxes = tags.querySelectorAll("input[type=checkbox]");
    var search = make("input", "campaign-tag-search");
    search.type = "search";
    search.placeholder = boxes.length ? "Search tags" : "No contact has a tag yet";
    search.setAttribute("aria-label", "Search tags");
    search.disabled = !boxes.length;
    var picker = make("div", "campaign-tag-picker");
    tags.parentNode.insertBefore(picker, tags);
    picker.appendChild(search);
    picker.appendChild(tags);
    search.addEventListener("input", function () {
      var term = search.value.trim().toLowerCase();
      Array.prototype.forEach.call(boxes, function (box) {
        var label = box.closest("label") || box.parentNode;
        label.parentNode.hidden = term !== "" && label.textContent.toLowerCase().indexOf(term) < 0;
      });
    });
    search.addEventListener("keydown", function (event) { if (event.key === "Enter") { event.preventDefault(); } });
  }

  /* -- filters: rows serialised to the JSON campaigns.services reads -- */
  var filtersJson = form.querySelector(".campaign-filters-json");
  var filtersBox = make("div", "campaign-filters");
  var FILTERS = {
    attribute: { label: "Attribute", operators: [["is", "is"]] },
    language: { label: "Language", operators: [["is", "is"]] },
    created: { label: "Created", operators: [["after", "after"], ["before", "before"]] },
    opted_in: { label: "Opted in", operators: [["is", "is"]] }
  };
  function options(select, pairs, chosen) {
    pairs.forEach(function (pair) {
      var option = make("option", "", pair[1]);
      option.value = pair[0];
      option.selected = pair[0] === chosen;
      select.appendChild(option);
    });
  }
  function filtersWrite() {
    var filters = {};
    Array.prototype.forEach.call(filtersBox.querySelectorAll(".campaign-filter"), function (line) {
      var kind = line.querySelector(".campaign-filter-field").value;
      var operator = line.querySelector(".campaign-filter-operator").value;
      var value = line.querySelector(".campaign-filter-value");
      var key = line.querySelector(".campaign-filter-key");
      if (kind === "attribute" && key.value.trim()) {
        filters.attributes = filters.attributes || {};
        filters.attributes[key.value.trim()] = value.value;
      } else if (kind === "language" && value.value.trim()) {
        filters.language = value.value.trim();
      } else if (kind === "created" && value.value) {
        filters["created_" + operator] = value.value;
      } else if (kind === "opted_in") {
        filters.opted_in = value.value === "yes";
      }
    });
    filtersJson.value = JSON.stringify(filters);
    audienceChanged();
  }
  function filterRow(kind, operator, key, value) {
    var line = make("div", "campaign-filter");
    var kindSelect = make("select", "campaign-filter-field");
    kindSelect.setAttribute("aria-label", "Filter on");
    options(kindSelect, Object.keys(FILTERS).map(function (name) { return [name, FILTERS[name].label]; }), kind);
    var keyInput = make("input", "campaign-filter-key");
    keyInput.setAttribute("list", "campaign-attribute-keys");
    keyInput.setAttribute("aria-label", "Attribute");
    keyInput.placeholder = "attribute";
    keyInput.value = key || "";
    var operatorSelect = make("select", "campaign-filter-operator");
    operatorSelect.setAttribute("aria-label", "Operator");
    var valueHolder = make("span", "campaign-filter-value-holder");
    var remove = make("button", "campaign-filter-remove", "✕");
    remove.type = "button";
    remove.title = "Remove this filter";
    remove.setAttribute("aria-label", "Remove this filter");
    function shape(chosenOperator, chosenValue) {
      var name = kindSelect.value;
      keyInput.hidden = name !== "attribute";
      operatorSelect.textContent = "";
      options(operatorSelect, FILTERS[name].operators, chosenOperator);
      valueHolder.textContent = "";
      var input;
      if (name === "opted_in") {
        input = make("select", "campaign-filter-value");
        options(input, [["yes", "yes"], ["no", "no"]], chosenValue === false ? "no" : "yes");
      } else {
        input = make("input", "campaign-filter-value");
        input.type = name === "created" ? "datetime-local" : "text";
        input.placeholder = name === "language" ? "e.g. en" : "value";
        input.value = chosenValue === undefined || chosenValue === null ? "" : String(chosenValue).slice(0, name === "created" ? 16 : undefined);
      }
      input.setAttribute("aria-label", "Value");
      valueHolder.appendChild(input);
    }
    shape(operator, value);
    kindSelect.addEventListener("change", function () { shape(); filtersWrite(); });
    remove.addEventListener("click", function () { line.remove(); filtersWrite(); });
    line.addEventListener("input", filtersWrite);
    line.addEventListener("change", filtersWrite);
    [kindSelect, keyInput, operatorSelect, valueHolder, remove].forEach(function (node) { line.appendChild(node); });
    filtersBox.insertBefore(line, filtersBox.querySelector(".campaign-filter-add"));
    return line;
  }
  if (filtersJson) {
    var stored = null;
    try { stored = JSON.parse(filtersJson.value || "{}"); } catch (error) { stored = null; }
    if (stored !== null && typeof stored === "object" && !Array.isArray(stored)) {
      filtersJson.hidden = true;
      var keyList = make("datalist");
      keyList.id = "campaign-attribute-keys";
      config.attributeKeys.forEach(function (key) { var option = make("option"); option.value = key; keyList.appendChild(option); });
      filtersBox.appendChild(keyList);
      var add = make("button", "button campaign-filter-add", "+ Add a filter");
      add.type = "button";
      add.addEventListener("click", function () {
        filterRow("attribute", "is", config.attributeKeys[0] || "", "").querySelector(".campaign-filter-value").focus();
      });
      filtersBox.appendChild(add);
      filtersJson.parentNode.appendChild(filtersBox);
      Object.keys(stored.attributes || {}).forEach(function (key) { filterRow("attribute", "is", key, stored.attributes[key]); });
      if (stored.language) { filterRow("language", "is", "", stored.language); }
      if (stored.created_after) { filterRow("created", "after", "", stored.created_after); }
      if (stored.created_before) { filterRow("created", "before", "", stored.created_before); }
      if (stored.opted_in !== undefined && stored.opted_in !== null) { filterRow("opted_in", "is", "", stored.opted_in); }
    }
  }

  /* -- the audience's count, for the unsaved form -- */
  var count = make("div", "campaign-audience-count");
  count.setAttribute("aria-live", "polite");
  var countAsked = 0;
  var audienceRow = row("audience_filters") || row("audience_tags");
  if (config.contactData && audienceRow) {
    audienceRow.parentNode.insertBefore(count, audienceRow.nextSibling);
  }
  var countRefresh = debounce(function () {
    if (!config.contactData) { return; }
    var asked = ++countAsked;
    count.classList.add("campaign-loading");
    post(config.countUrl, formState()).then(function (answer) {
      if (asked !== countAsked) { return; }
      count.classList.remove("campaign-loading");
      if (answer.ok) {
        count.textContent = "";
        count.appendChild(make("strong", "", answer.body.count.toLocaleString()));
        count.appendChild(document.createTextNode(answer.body.count === 1 ? " contact matches now" : " contacts match now"));
        count.classList.remove("campaign-error");
      } else {
        count.textContent = Object.values(answer.body.errors || { detail: [answer.body.detail] }).join(" ");
        count.classList.add("campaign-error");
      }
    });
  }, 300);

  /* -- the preview, for a sample contact -- */
  var pane = make("div", "campaign-preview-pane");
  var caption = make("div", "campaign-preview-caption");
  caption.appendChild(make("span", "", "Preview"));
  var contactSelect = make("select", "campaign-preview-contact");
  contactSelect.setAttribute("aria-label", "Preview for");
  contactSelect.hidden = true;
  caption.appendChild(contactSelect);
  var screen = make("div", "campaign-preview-screen");
  var note = make("p", "campaign-preview-note");
  pane.appendChild(caption);
  pane.appendChild(screen);
  pane.appendChild(note);
  var contentSet = row("channel") && row("body") ? row("body").closest("fieldset") : null;
  if (contentSet) {
    var split = make("div", "campaign-content-split");
    var fields = make("div", "campaign-content-fields");
    Array.prototype.slice.call(contentSet.querySelectorAll(":scope > .form-row")).forEach(function (node) { fields.appendChild(node); });
    split.appendChild(fields);
    split.appendChild(pane);
    contentSet.appendChild(split);
  }
  function marked(text) {
    /* The text with each placeholder left unfilled marked. */
    var fragment = document.createDocumentFragment(), last = 0, pattern = /\{\{[^}]*\}\}/g, match;
    text = String(text || "");
    while ((match = pattern.exec(text)) !== null) {
      fragment.appendChild(document.createTextNode(text.slice(last, match.index)));
      fragment.appendChild(make("mark", "", match[0]));
      last = pattern.lastIndex;
    }
    fragment.appendChild(document.createTextNode(text.slice(last)));
    return fragment;
  }
  function bubbleDraw(answer) {
    screen.textContent = "";
    screen.className = "campaign-preview-screen campaign-preview-" + answer.channel.toLowerCase();
    var bubble = make("div", "campaign-bubble");
    if (answer.channel === "WHATSAPP") {
      if (!answer.parts) {
        screen.appendChild(make("p", "campaign-quiet", "Choose a template to see the message."));
        return;
      }
      var parts = answer.parts;
      if (parts.media) { bubble.appendChild(make("div", "campaign-bubble-media", parts.media.charAt(0).toUpperCase() + parts.media.slice(1))); }
      if (parts.header) { bubble.appendChild(make("div", "campaign-bubble-header")).appendChild(marked(parts.header)); }
      bubble.appendChild(make("div", "campaign-bubble-body")).appendChild(marked(parts.body));
      if (parts.footer) { bubble.appendChild(make("div", "campaign-bubble-footer", parts.footer)); }
      bubble.appendChild(make("div", "campaign-bubble-time", "12:00"));
      screen.appendChild(bubble);
      if (parts.buttons.length) {
        var buttons = make("div", "campaign-bubble-buttons");
        parts.buttons.forEach(function (text) { buttons.appendChild(make("div", "", text)); });
        screen.appendChild(buttons);
      }
    } else {
      if (answer.channel === "EMAIL") {
        bubble.appendChild(make("div", "campaign-bubble-header")).appendChild(marked(answer.subject || "(no subject)"));
      }
      bubble.appendChild(make("div", "campaign-bubble-body")).appendChild(marked(answer.body || "(no body)"));
      screen.appendChild(bubble);
    }
  }
  var previewAsked = 0;
  var previewRefresh = debounce(function () {
    var asked = ++previewAsked;
    var data = formState();
    if (contactSelect.value) { data.set("preview_contact", contactSelect.value); }
    pane.classList.add("campaign-loading");
    post(config.previewUrl, data).then(function (answer) {
      if (asked !== previewAsked) { return; }
      pane.classList.remove("campaign-loading");
      if (!answer.ok) {
        note.textContent = Object.values(answer.body.errors || { detail: [answer.body.detail] }).join(" ");
        return;
      }
      var chosen = answer.body.contact ? String(answer.body.contact.id) : "";
      contactSelect.textContent = "";
      answer.body.contacts.forEach(function (contact) {
        var option = make("option", "", "for " + contact.label);
        option.value = contact.id;
        option.selected = String(contact.id) === chosen;
        contactSelect.appendChild(option);
      });
      contactSelect.hidden = !answer.body.contacts.length;
      bubbleDraw(answer.body);
      note.textContent = answer.body.note || answer.body.error ||
        (answer.body.contact ? "" : config.contactData ? "No contact in the audience: placeholders show their defaults." : "");
    });
  }, 300);
  contactSelect.addEventListener("change", previewRefresh);

  function audienceChanged() { countRefresh(); previewRefresh(); }

  /* -- wiring -- */
  field("channel").addEventListener("change", function () { channelShow(); audienceChanged(); });
  if (field("template")) {
    field("template").addEventListener("change", function () { parametersDraw(); previewRefresh(); });
  }
  form.addEventListener("input", function (event) {
    if (event.target.closest(".campaign-filters") || event.target.closest(".campaign-preview-pane")) { return; }
    if (event.target === body) { smsCountShow(); }
    if (event.target.classList.contains("campaign-tag-search")) { return; }
    previewRefresh();
  });
  if (tags) { tags.addEventListener("change", audienceChanged); }

  parametersDraw();
  channelShow();
  audienceChanged();
})();
