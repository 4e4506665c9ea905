/* A template as WhatsApp shows it: a bubble with its header, body, footer and buttons, each
   {{variable}} replaced by its value or, without one, marked. The one rendering of a template for
   the console: the reply box (values typed for a send) and the template form and page (examples).

   WharfTemplatePreview.render(bubble, components, valueOf): `components` as Meta lists them,
   `valueOf(where, name)` the value of a variable: where is "header-0" or "body-0", name the
   variable ("1", "customer_name"), the media format (IMAGE ...) or LOCATION.name. */
(function () {
  "use strict";

  var PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

  function filled(text, valueOf, where) {
    var fragment = document.createDocumentFragment(), last = 0, match, pattern = new RegExp(PLACEHOLDER.source, "g");
    text = String(text || "");
    while ((match = pattern.exec(text)) !== null) {
      fragment.appendChild(document.createTextNode(text.slice(last, match.index)));
      var value = valueOf(where, match[1]);
      if (value) {
        fragment.appendChild(document.createTextNode(value));
      } else {
        var mark = document.createElement("mark");
        mark.textContent = match[0];
        fragment.appendChild(mark);
      }
      last = pattern.lastIndex;
    }
    fragment.appendChild(document.createTextNode(text.slice(last)));
    return fragment;
  }

  function part(className, content) {
    var node = document.createElement("div");
    node.className = className;
    if (typeof content === "string") { node.textContent = content; } else { node.appendChild(content); }
    return node;
  }

  function render(bubble, components, valueOf) {
    bubble.textContent = "";
    (components || []).forEach(function (component) {
      var kind = String(component.type || "").toUpperCase();
      if (kind === "HEADER") {
        var format = String(component.format || "TEXT").toUpperCase();
        if (format === "TEXT") {
          bubble.appendChild(part("wharf-preview-header", filled(component.text, valueOf, "header-0")));
        } else if (format === "LOCATION") {
          bubble.appendChild(part("wharf-preview-media", "📍 " + (valueOf("header-0", "LOCATION.name") || "Location")));
        } else {
          var link = valueOf("header-0", format);
          var label = format.charAt(0) + format.slice(1).toLowerCase();
          bubble.appendChild(part("wharf-preview-media", label + (link ? ": " + link : "")));
        }
      } else if (kind === "BODY") {
        bubble.appendChild(part("wharf-preview-body", filled(component.text, valueOf, "body-0")));
      } else if (kind === "FOOTER") {
        bubble.appendChild(part("wharf-preview-footer", String(component.text || "")));
      } else if (kind === "BUTTONS") {
        var buttons = document.createElement("div");
        buttons.className = "wharf-preview-buttons";
        (component.buttons || []).forEach(function (button) {
          var type = String(button.type || "").toUpperCase();
          var icon = type === "URL" ? "↗ " : type === "PHONE_NUMBER" ? "☎ " : "";
          buttons.appendChild(part("wharf-preview-button", icon + String(button.text || "")));
        });
        bubble.appendChild(buttons);
      }
    });
  }

  /* The examples a template was submitted with, as a valueOf for render. */
  function examplesOf(components) {
    var values = {};
    (components || []).forEach(function (component) {
      var example = component.example || {};
      var kind = String(component.type || "").toUpperCase();
      if (kind === "HEADER" && example.header_text) { values["header-0:1"] = example.header_text[0]; }
      if (kind === "BODY" && example.body_text && example.body_text[0]) {
        example.body_text[0].forEach(function (value, index) { values["body-0:" + (index + 1)] = value; });
      }
      if (kind === "BODY" && example.body_text_named_params) {
        example.body_text_named_params.forEach(function (item) { values["body-0:" + item.param_name] = item.example; });
      }
    });
    return function (where, name) { return values[where + ":" + name] || ""; };
  }

  window.WharfTemplatePreview = { render: render, examplesOf: examplesOf, placeholder: PLACEHOLDER };
})();
