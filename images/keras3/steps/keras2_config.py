"""Translate a Keras 3 (or tf_keras 2.16+) model config into the Keras 2 grammar that Keras 2.15, tensorflowjs and
the TF.js layers runtime read.

What changes between the two grammars:
- a serialized object is {"module", "class_name", "config", "registered_name", "build_config", ...} in Keras 3 and
  {"class_name", "config"} in Keras 2;
- a dtype policy ({"class_name": "DTypePolicy", "config": {"name": "float32"}}) is its name;
- InputLayer's `batch_shape` is `batch_input_shape`;
- a functional layer's inbound node is {"args": [...keras tensors...], "kwargs": {...}} in Keras 3 and
  [[layer, node_index, tensor_index, kwargs], ...] in Keras 2; input_layers/output_layers are always lists of
  [layer, node_index, tensor_index];
- config keys Keras 2 does not know: dropped when they hold their do-nothing value (None, False, empty), refused
  otherwise, naming the layer and the key (`known_keys` says what Keras 2 takes, from tf_keras's signatures).
"""

KERAS_TENSOR = "__keras_tensor__"
# keys tf_keras 2.16+ writes that Keras 2.15 (and TF.js) do not know: {class: {key: its do-nothing value}}
NEWER_THAN_2_15 = {"InputLayer": {"optional": False}}


class Untranslatable(Exception):
    """The model holds something the Keras 2 grammar cannot say (the message names the layer)."""


def _policy_name(value):
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "Policy", "FloatDTypePolicy"):
        return value.get("config", {}).get("name", "float32")
    return value


def _neutral(value):
    return value is None or value is False or (isinstance(value, (list, dict, str)) and not value)


def _is_object(value):
    return isinstance(value, dict) and "class_name" in value and "config" in value


class Translator:
    """known_keys(class_name, kind) -> the config keys Keras 2 takes for that class (None: the class is unknown);
    kind is "layer" or the nested object's module tail (initializers, regularizers, constraints, ...)."""

    def __init__(self, known_keys):
        self.known_keys = known_keys
        self.dropped = []  # "layer.key" of every neutral key left out

    def model(self, serialized):
        """{"class_name", "config"} of a whole model (Functional or Sequential)."""
        cls = serialized["class_name"]
        config = dict(serialized["config"])
        if cls == "Sequential":
            out = {"name": config.get("name", "sequential"),
                   "layers": [self.layer(entry, functional=False) for entry in config.get("layers", [])]}
            return {"class_name": "Sequential", "config": out}
        if cls not in ("Functional", "Model") or "layers" not in config:
            raise Untranslatable(f"the model is a {cls} (a subclassed model has no config to translate)")
        out = {"name": config.get("name", "model"),
               "layers": [self.layer(entry, functional=True) for entry in config["layers"]],
               "input_layers": self._endpoints(config.get("input_layers", [])),
               "output_layers": self._endpoints(config.get("output_layers", []))}
        return {"class_name": "Functional", "config": out}

    @staticmethod
    def _endpoints(value):
        return [list(value)] if value and isinstance(value[0], str) else [list(v) for v in value]

    def layer(self, entry, functional):
        cls = entry["class_name"]
        if cls in ("Functional", "Sequential", "Model"):  # a nested model is a layer too
            inner = self.model(entry)
            out = {"class_name": inner["class_name"], "config": inner["config"]}
        else:
            config = dict(entry["config"])
            name = config.get("name", entry.get("name", cls))
            if cls == "InputLayer" and "batch_shape" in config:
                config["batch_input_shape"] = config.pop("batch_shape")
            out = {"class_name": cls, "config": self._config(cls, "layer", config, name)}
        if functional:
            out["name"] = out["config"].get("name", entry.get("name"))
            out["inbound_nodes"] = [self._node(node) for node in entry.get("inbound_nodes", [])]
        return out

    def _config(self, cls, kind, config, owner):
        known = self.known_keys(cls, kind)
        if known is None:
            what = "layer" if kind == "layer" else kind.rstrip("s")
            raise Untranslatable(f"layer '{owner}' uses {what} {cls}, which Keras 2 (and so the TF.js layers "
                                 "runtime) does not have")
        out = {}
        newer = NEWER_THAN_2_15.get(cls, {}) if kind == "layer" else {}
        for key, value in config.items():
            value = self._value(value, owner)
            if key in newer or key not in known:
                if _neutral(value) or (key in newer and value == newer[key]):
                    self.dropped.append(f"{owner}.{key}")
                    continue
                raise Untranslatable(f"layer '{owner}' ({cls}) sets {key}={value!r}, which Keras 2 (and so the "
                                     "TF.js layers runtime) has no equivalent for")
            out[key] = value
        return out

    def _value(self, value, owner):
        policy = _policy_name(value)
        if policy is not value:
            return policy
        if _is_object(value) and "module" in value:  # an initializer, regularizer, constraint, activation, ...
            kind = str(value.get("module") or "").rsplit(".", 1)[-1]
            return {"class_name": value["class_name"],
                    "config": self._config(value["class_name"], kind, dict(value["config"] or {}), owner)}
        if isinstance(value, list):
            return [self._value(v, owner) for v in value]
        return value

    def _node(self, node):
        if isinstance(node, list):  # already Keras 2: [[layer, node, tensor, kwargs], ...]
            return node
        tensors = []

        def collect(value):
            if isinstance(value, dict) and value.get("class_name") == KERAS_TENSOR:
                tensors.append(list(value["config"]["keras_history"]))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    collect(v)
            elif isinstance(value, dict):
                for v in value.values():
                    collect(v)

        collect(node.get("args", []))
        kwargs = {}
        for key, value in (node.get("kwargs") or {}).items():
            found = len(tensors)
            collect(value)
            if len(tensors) == found:
                kwargs[key] = value  # e.g. training=False; tensors passed as kwargs join the inputs
        return [history + [kwargs] for history in tensors]


def layer_classes(config):
    """[(layer name, class name)] of every layer of a translated model config, nested models' layers included."""
    found = []
    for entry in config["config"].get("layers", []):
        found.append((entry["config"].get("name", ""), entry["class_name"]))
        if entry["class_name"] in ("Functional", "Sequential", "Model"):
            found += layer_classes(entry)
    return found
