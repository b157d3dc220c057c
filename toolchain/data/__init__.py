"""Data sets by spec string: `digits`, `breast-cancer`, `npz:PATH`, `folder:PATH`,
`synthetic:KIND[:SIZE]`, each `[:split]`.

Every stage that needs samples (eval, quantise calibration, flip campaigns, bench inputs,
training) goes through `sources.load_dataset`, so one spec string means the same samples
everywhere. Images come out as float32 NCHW in [0, 1]; tables as float32 (N, features),
unscaled. Normalisation is the model's business (its metadata, applied by `shaping`).

Modules:
  dataset.py       `Dataset` (one split's samples) and `DataSpec` (a parsed spec)
  sources.py       the registry: one `Source` entry per kind of spec; parse_spec, load_dataset
  sklearn_sets.py  `digits`, `breast-cancer` (fixed stratified 70/10/20 split)
  npz.py           `npz:PATH`, the MedMNIST array layout
  folder.py        `folder:PATH`, class sub-folders of images
  synthetic.py     `synthetic:KIND[:SIZE]`, seeded faint-lesion images (pipeline tests only)
  images.py        the one image decoder (folder data sets and `qtool predict`)
  inputs.py        the files `qtool predict` is given -> one batch
  shaping.py       fit samples to a model's input shape; normalise
  datasets.py      the names most stages import, re-exported

Adding a source (e.g. `dicom:FOLDER`) is one file, one registry
entry and its test:
  1. `data/<name>.py` with `load(spec: DataSpec, split: str, explicit: bool) -> Dataset`.
     `spec.argument` is the text after `NAME:` (`spec.path` when it is a path); `split` is
     train, val or test; `explicit` says whether the user asked for that split (a source
     holding one split may serve it when the split was only defaulted). Raise `QtoolError`
     with one line saying what is wrong and what to do; import optional packages inside
     `load` and raise `MissingExtra` when they are absent.
  2. One `_add(Source(name, help_line, module.load, argument="METAVAR"))` in `sources.py`;
     pass `check=` to reject a malformed argument at parse time (e.g. an unknown KIND).
     parse_spec, load_dataset, the usage line in errors and `--help` pick it up from there.
  3. `tests/test_data_<name>.py`: the spec parses, each split loads real files, bad input
     is a QtoolError.
"""
