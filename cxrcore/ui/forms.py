"""Widgets built from engine specs: the dataset registration form and the split builder."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxrcore.data.adapters import ADAPTERS, load_source
from cxrcore.data.index import SPLITS
from cxrcore.data.split import DEFAULT_FRACTIONS, patient_split
from cxrcore.store import Workspace
from cxrcore.ui import state
from cxrcore.ui.page import guarded


def register_form(ws: Workspace) -> None:
    """A form that indexes a source with its adapter and registers it (fields come from the adapter spec)."""
    source = st.selectbox(
        "Source", list(ADAPTERS), format_func=lambda n: f"{n}: {ADAPTERS[n].summary}", key="register_source"
    )
    spec = ADAPTERS[source]
    with st.form(f"register_{source}"):
        name = st.text_input("Dataset name", placeholder="e.g. nih-subset", key="register_name")
        values: dict[str, str] = {}
        for p in spec.params:
            label = p.name.replace("_", " ") + (" *" if p.required else "")
            if p.kind == "choice":
                values[p.name] = st.selectbox(
                    label, p.choices, index=p.choices.index(p.default), help=p.help, key=f"register_{p.name}"
                )
            else:
                values[p.name] = st.text_input(
                    label,
                    help=p.help,
                    placeholder="path on the server" if p.kind == "path" else "",
                    key=f"register_{source}_{p.name}",
                )
        replace = st.checkbox("Replace a dataset with the same name")
        submitted = st.form_submit_button("Register")
    if submitted:
        with guarded("register the dataset"), st.spinner("Indexing ..."):
            arguments = {k: v.strip() for k, v in values.items() if v and v.strip()}
            dataset = load_source(source, **arguments)
            record = ws.register_dataset(name.strip(), source, arguments, dataset, replace=replace)
            st.session_state[state.DATASET] = record.name
            st.success(f"Registered {record.name}: {record.n_images} images, {record.n_patients} patients.")
            st.rerun()


def split_builder(ws: Workspace, name: str, index_frame: pd.DataFrame) -> None:
    """Fractions, seed and stratification for a new patient-level split, stored on submit."""
    with st.form("split_form"):
        *columns, last = st.columns(len(SPLITS) + 1)
        fractions = tuple(
            column.number_input(split_name, 0.0, 1.0, default, 0.05)
            for column, split_name, default in zip(columns, SPLITS, DEFAULT_FRACTIONS, strict=True)
        )
        seed = last.number_input("seed", 0, 2**31 - 1, 0, 1, key="split_seed")
        stratify = st.checkbox("Stratify by label (rarest positive label per patient)", value=True)
        submitted = st.form_submit_button("Build patient-level split")
    if submitted:
        with guarded("build the split"):
            split = patient_split(index_frame, fractions, seed=int(seed), stratify=stratify)
            ws.save_split(name, split, fractions=list(fractions), seed=int(seed), stratified=stratify)
            st.success("Split saved.")
            st.rerun()
