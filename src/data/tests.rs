//! Tests of loading by name, splitting, and the shipped MNIST fixture.

use super::*;
use std::collections::BTreeSet;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-5k")
}

fn opts(n: usize, seed: u64) -> LoadOptions {
    LoadOptions {
        n,
        seed,
        data_dir: None,
    }
}

#[test]
fn mnist_fixture_has_5000_labelled_digits_in_range() {
    let opts = LoadOptions {
        data_dir: Some(fixture_dir()),
        ..opts(0, 0)
    };
    let loaded = load("mnist", &opts).unwrap();
    assert!(loaded.test.is_none());
    assert_eq!(Path::new(&loaded.origin), fixture_dir());
    let Dataset::Images(set) = &loaded.train else {
        panic!("mnist should load as images");
    };
    assert_eq!((set.n, set.rows, set.cols), (5000, 28, 28));
    assert_eq!(set.images.len(), 5000 * 28 * 28);
    let (lo, hi) = set
        .images
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert_eq!((lo, hi), (-1.0, 1.0));
    let labels = set.labels.as_ref().expect("the fixture has a label file");
    let distinct: BTreeSet<u8> = labels.iter().copied().collect();
    assert!(distinct.len() >= 10, "labels {distinct:?}");
    for class in 0..10u8 {
        assert_eq!(labels.iter().filter(|&&l| l == class).count(), 500);
    }
    assert_eq!(loaded.train.example_shape(), vec![1, 28, 28]);
    let b = loaded.train.batch(&[0, 4999], &Device::Cpu).unwrap();
    assert_eq!(b.dims(), &[2, 1, 28, 28]);
}

#[test]
fn a_directory_path_loads_as_images() {
    let dir = fixture_dir();
    let loaded = load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.train.len(), 5000);
}

#[test]
fn toy_names_generate_and_csv_paths_read_points() {
    let a = load("swiss-roll", &opts(300, 4)).unwrap();
    assert_eq!(a.origin, "swiss-roll (n = 300, seed 4)");
    assert_eq!(a.train, load("swiss_roll", &opts(300, 4)).unwrap().train);
    assert_eq!(a.train.to_tensor(&Device::Cpu).unwrap().dims(), &[300, 2]);
    let e = load("circles", &opts(0, 0)).unwrap_err().to_string();
    assert!(e.contains("0 points"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pts.CSV");
    std::fs::write(&path, "a,b,c\n1,2,3\n4,5,6\n").unwrap();
    let loaded = load(path.to_str().unwrap(), &opts(1, 0)).unwrap();
    assert_eq!(loaded.train.example_shape(), vec![3]);
    assert_eq!(loaded.train.len(), 2);
}

#[test]
fn unknown_names_list_what_is_valid() {
    let e = load("spirals", &LoadOptions::default())
        .unwrap_err()
        .to_string();
    for want in [
        "'spirals'",
        "swiss-roll",
        "s-curve",
        "mnist",
        "fashion-mnist",
        ".csv",
    ] {
        assert!(e.contains(want), "{e} lacks {want}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pts.txt");
    std::fs::write(&path, "1,2\n").unwrap();
    let e = load(path.to_str().unwrap(), &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not a data file"), "{e}");
    let e = load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("holds no train-images"), "{e}");
    let e = load("/no/such/file.csv", &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
}

#[test]
fn split_is_deterministic_disjoint_and_sized() {
    let (train, held) = split_indices(100, 0.25, 9).unwrap();
    assert_eq!((train.len(), held.len()), (75, 25));
    assert_eq!(
        (train.clone(), held.clone()),
        split_indices(100, 0.25, 9).unwrap()
    );
    assert_ne!(held, split_indices(100, 0.25, 10).unwrap().1);
    let all: BTreeSet<usize> = train.iter().chain(&held).copied().collect();
    assert_eq!(all.len(), 100);
    assert!(train.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(split_indices(10, 0.001, 0).unwrap().1.len(), 1);
    assert_eq!(split_indices(10, 0.999, 0).unwrap().0.len(), 1);
    for f in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(split_indices(10, f, 0).is_err(), "fraction {f}");
    }
    assert!(split_indices(1, 0.5, 0).is_err());
}

#[test]
fn split_keeps_points_and_labels_together() {
    let data = ToyDataset::EightGaussians.sample(50, 1);
    let (a, b) = Dataset::Points(data.clone()).split(0.2, 3).unwrap();
    let (ti, hi) = split_indices(50, 0.2, 3).unwrap();
    assert_eq!(a, Dataset::Points(data.subset(&ti).unwrap()));
    assert_eq!(b, Dataset::Points(data.subset(&hi).unwrap()));

    let idx = IdxImages {
        n: 4,
        rows: 1,
        cols: 1,
        pixels: vec![0, 85, 170, 255],
    };
    let images = ImageDataset::from_idx(idx, Some(vec![0, 1, 2, 3])).unwrap();
    let loaded = LoadedDataset {
        train: Dataset::Images(images),
        test: None,
        origin: "mem".into(),
    };
    let (train, held) = loaded.train_and_held_out(0.5, 0).unwrap();
    for part in [train, held] {
        let Dataset::Images(set) = part else { panic!() };
        for (i, &l) in set.labels.as_ref().unwrap().iter().enumerate() {
            assert_eq!(set.images[i], scale_pixel(85 * l));
        }
    }
}

#[test]
fn class_subsets_keep_only_their_labels() {
    let fixture = LoadOptions {
        data_dir: Some(fixture_dir()),
        ..opts(0, 0)
    };
    let loaded = load("mnist:1,7", &fixture).unwrap();
    let Dataset::Images(set) = &loaded.train else {
        panic!("images");
    };
    let labels = set.labels.as_ref().unwrap();
    assert!(labels.iter().all(|&l| l == 1 || l == 7));
    assert!(labels.contains(&1) && labels.contains(&7));
    assert_eq!(set.images.len(), set.n * 784);
    assert!(
        loaded.origin.contains("classes [1, 7]"),
        "{}",
        loaded.origin
    );
    let e = load("two-moons:1", &opts(100, 0)).unwrap_err().to_string();
    assert!(e.contains("for labelled images"), "{e}");
    let e = load("mnist:3-1", &fixture).unwrap_err().to_string();
    assert!(e.contains("e.g. mnist:0-4"), "{e}");
}
