//! `modelgate baseline` against the baselines `models/train.py` wrote for the demo versions:
//! the same training rows (the script writes them, `--training-data`) give the same file.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// `modelgate baseline` of a copy of demo version `version` (without its baseline) on `data`.
fn fitted(version: u32, data: &Path, work: &Path) -> Value {
    fitted_with(version, data, work, &[])
}

fn fitted_with(version: u32, data: &Path, work: &Path, args: &[&str]) -> Value {
    let model = work.join(format!(
        "v{version}-{}",
        data.extension().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(demo_registry().join(format!("transactions/{version}"))).unwrap()
    {
        let entry = entry.unwrap();
        if entry.file_name() != "baseline.json" {
            std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        }
    }
    let said = succeed(
        Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["baseline", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(data)
            .args(args)
            .env("ORT_DYLIB_PATH", ort_dylib()),
    );
    assert!(said.contains("outputs probability, label"), "{said}");
    serde_json::from_slice(&std::fs::read(model.join("baseline.json")).unwrap()).unwrap()
}

/// Numbers equal within `rel` of their size; everything else exactly.
fn assert_close(got: &Value, want: &Value, rel: f64, at: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= rel * w.abs().max(1e-300),
                "{at}: {g} against {w}"
            );
        }
        (Value::Object(g), Value::Object(w)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(g), keys(w), "{at}");
            for (k, v) in w {
                assert_close(&g[k], v, rel, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{at}");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_close(g, w, rel, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

#[test]
fn the_demo_training_rows_give_the_training_scripts_baseline_from_csv_and_parquet() {
    let work = tempfile::tempdir().unwrap();
    let python = train_python();
    succeed(
        Command::new(&python)
            .arg(repo().join("models/train.py"))
            .arg("--training-data")
            .arg(work.path()),
    );
    for version in [1, 2] {
        let csv = work
            .path()
            .join(format!("transactions_v{version}_train.csv"));
        let want: Value = serde_json::from_slice(
            &std::fs::read(demo_registry().join(format!("transactions/{version}/baseline.json")))
                .unwrap(),
        )
        .unwrap();
        let got = fitted(version, &csv, work.path());
        assert_eq!(got["rows"], want["rows"]);
        // Shares are counts over rows: the same to the last bit. Edges and moments: the same
        // sums in another order at most, and probabilities from the same engine.
        for section in ["features", "outputs"] {
            assert_close(&got[section], &want[section], 1e-9, section);
        }

        // The same rows as Parquet (typed columns, not text) give the same baseline: with the
        // product dictionary-encoded (as pandas writes a category) and a column that is no
        // input and has nulls.
        let parquet = csv.with_extension("parquet");
        succeed(Command::new(&python).arg("-c").arg(format!(
            "import pyarrow as pa, pyarrow.csv, pyarrow.parquet\n\
             t = pyarrow.csv.read_csv({:?})\n\
             t = t.set_column(0, 'Product', t['Product'].dictionary_encode())\n\
             t = t.append_column('note', pa.array([None] * t.num_rows, pa.string()))\n\
             pyarrow.parquet.write_table(t, {:?})",
            csv.display().to_string(),
            parquet.display().to_string()
        )));
        let from_parquet = fitted(version, &parquet, work.path());
        for section in ["features", "outputs"] {
            assert_close(&from_parquet[section], &got[section], 1e-12, section);
        }
    }

    // With the label column, the model's quality on its own training rows is kept too.
    let csv = work.path().join("transactions_v1_train.csv");
    let labelled = fitted_with(1, &csv, work.path(), &["--label", "Label"]);
    let q = &labelled["quality"];
    let rows = labelled["rows"].as_u64().unwrap();
    assert_eq!(q["labels"].as_u64(), Some(rows), "{q}");
    let counted: u64 = ["tp", "fp", "fn", "tn"]
        .iter()
        .map(|k| q[k].as_u64().unwrap())
        .sum();
    assert_eq!(counted, rows, "{q}");
    assert!(q["auc"].as_f64().unwrap() > 0.9, "{q}");
    assert_eq!(q["label_column"], "Label");
}

/// `modelgate baseline ARGS` on a model folder and a CSV of `rows`, which must be refused
/// (exit 2): its stderr.
fn refused(rows: &str, args: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let model = version_without_spec(work.path(), "m");
    let data = work.path().join("rows.csv");
    std::fs::write(&data, rows).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["baseline", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_label_that_is_not_zero_or_one_is_refused_naming_its_row() {
    let err = refused(
        "Product,Amount,transactionCount,isTimeout,MaxProductAmount,MaxDifferenceRatio,Label\n\
         Product A,1.5,3,false,2.0,0.25,1\n\
         Product B,2.5,1,true,2.5,0.0,2\n",
        &["--label", "Label"],
    );
    assert!(
        err.contains("label column 'Label' row 1 is '2': labels are 0/1 or true/false"),
        "{err}"
    );
}

#[test]
fn data_without_the_models_inputs_is_refused_naming_the_column() {
    let err = refused("Product,Amount\nProduct A,1.5\n", &[]);
    assert!(
        err.contains("rows.csv: it has no column 'transactionCount', an input of the model"),
        "{err}"
    );
}
