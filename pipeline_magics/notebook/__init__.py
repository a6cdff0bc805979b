"""The notebook layer, the only one that imports IPython and ipywidgets: the magics and their settings, the
cell's waiting, the live view and widgets, the Vault form, SDP commands, help and completion."""
