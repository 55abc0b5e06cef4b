"""Models: the bundled and workspace checkpoints (classifiers and lesion detectors) with their model cards;
import foreign weights, delete a workspace checkpoint, export a classifier to ONNX; the registered
architectures."""

from __future__ import annotations

import streamlit as st

from cxrcore.models.catalog import list_checkpoints
from cxrcore.ui import models as um
from cxrcore.ui import state
from cxrcore.ui.data import csv_download
from cxrcore.ui.page import guarded, setup_page

ws = setup_page("Models")
st.title("Models")

entries = list_checkpoints(ws.home)
if not entries:
    st.info("No checkpoint yet: `make run` bundles demo models; the Train page makes more.")
else:
    table = um.checkpoint_table(entries)
    st.dataframe(table, hide_index=True, width="stretch")
    csv_download(table.set_index("checkpoint"), "checkpoints")
    paths = [str(e.path) for e in entries]
    current = st.session_state.get(state.CHECKPOINT)
    chosen = st.selectbox(
        "Model card of",
        paths,
        index=paths.index(current) if current in paths else 0,
        format_func=lambda p: next(e.title for e in entries if str(e.path) == p),
        key="models_card",
    )
    entry = next(e for e in entries if str(e.path) == chosen)
    with guarded("show the model card"):
        um.model_card(entry)
    left, right = st.columns(2)
    with left, guarded("export the model"):
        st.subheader("ONNX export")
        if entry.info.get("task") == "detect":
            st.caption("ONNX export is offered for classifiers; a detector's weights stay in safetensors.")
        elif st.button("Prepare ONNX file", key="onnx_prepare"):
            data = um.onnx_bytes(chosen, um.file_fingerprint(chosen))
            st.download_button(
                f"Download {entry.path.stem}.onnx ({len(data) / 1e6:.1f} MB)",
                data,
                file_name=f"{entry.path.parent.name}-{entry.path.stem}.onnx",
                mime="application/octet-stream",
                key="onnx_download",
            )
    with right, guarded("delete the checkpoint"):
        st.subheader("Delete")
        if um.delete_section(entry, ws.home):
            st.success("Deleted.")
            st.rerun()

st.subheader("Import foreign weights")
with guarded("import the weights"):
    imported = um.import_form(ws.home)
    if imported is not None:
        st.success(f"Imported as {imported.parent.name}/{imported.name}; it is now in the list above.")

if st.toggle("Show the registered architectures", value=False, key="models_registry"):
    with guarded("list the registered architectures"):
        st.dataframe(um.registry_table(), hide_index=True, width="stretch")
