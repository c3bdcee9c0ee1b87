// swift-tools-version:6.0
// NanoFind: nanoparticle segmentation and measurement for HRTEM micrographs.
//
// Layers (each a library target; "A <- B" means B imports A; docs/architecture.md draws them):
//   NanoTensor  (tensors, thread pool, SIMD kernels)
//     <- NanoNet  (autograd, layers, losses, Adam, U-Net, model files)
//   NanoHDF5    (thin Swift wrapper over libhdf5; used by NanoNet and MicrographIO)
//   MicrographIO (Micrograph value, readers and writers)
//     <- Preprocessing (median filter, normalisation, resampling, FFT, tiling, augmentation)
//       <- ParticleAnalysis (labelling, measures, touching-particle split)
//       <- Simulation (multislice HRTEM simulator)
//   NanoNet, Preprocessing, ParticleAnalysis, NanoTensor <- Segmentation (whole micrographs, batches, reports)
//     <- Training (datasets, trainer, evaluation)
//   nanofind (the command-line tool) imports them all.
//   FuzzTargets (readers and model parsers as fuzzing targets) <- nanofind-fuzz (libFuzzer entry).
import PackageDescription

// The hot kernels need a CPU flag: without one, SIMD16 multiply-adds become calls to fmaf
// (~200x slower, see ../shared/notes/cpu-kernels.md). The Makefile passes -DNF_SIMD16 when the CPU
// has AVX-512 so that the kernels use 16-lane vectors; otherwise they use 8 lanes (AVX2), or 4 on
// arm64 (NEON); `RegisterBlocking` sizes the kernels' register blocks for each.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-target-cpu", "native"], .when(configuration: .release)),
]

// The particle analysis runs with the kernels' flags too: its label and distance loops index
// arrays of the mask it was given, and with bounds checks they took a third longer (segment_4096's
// particles 0.24-0.36 s against 0.38-0.46 s in five alternating sets, Intel Xeon fam 6 mod 207).
// The readers and writers and the
// segmentation pipeline keep their checks (readers face corrupt files) and only get the CPU's
// vector instructions.
let nativeFlags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "native"], .when(configuration: .release)),
]

let package = Package(
    name: "NanoFind",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nanofind", targets: ["nanofind"]),
        .library(name: "NanoTensor", targets: ["NanoTensor"]),
        .library(name: "NanoNet", targets: ["NanoNet"]),
        .library(name: "MicrographIO", targets: ["MicrographIO"]),
        .library(name: "Preprocessing", targets: ["Preprocessing"]),
        .library(name: "Segmentation", targets: ["Segmentation"]),
        .library(name: "ParticleAnalysis", targets: ["ParticleAnalysis"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Simulation", targets: ["Simulation"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"5.0.0"),
    ],
    targets: [
        // C helpers that Swift's Glibc module does not expose (thread affinity, direct writes, printf's %.*f).
        .target(name: "CNanoSupport"),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"]), .brew(["hdf5"])]),
        .systemLibrary(name: "CTIFF", pkgConfig: "libtiff-4",
                       providers: [.apt(["libtiff-dev"]), .brew(["libtiff"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .systemLibrary(name: "CFFTW", pkgConfig: "fftw3f",
                       providers: [.apt(["libfftw3-dev"]), .brew(["fftw"])]),

        .target(name: "NanoTensor", dependencies: ["CNanoSupport"], swiftSettings: kernelFlags),
        .target(name: "NanoHDF5", dependencies: ["CHDF5"]),
        .target(name: "NanoNet", dependencies: ["CNanoSupport", "NanoTensor", "NanoHDF5"], swiftSettings: kernelFlags),
        .target(name: "MicrographIO",
                dependencies: ["CNanoSupport", "CTIFF", "CPNG", "NanoHDF5", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: nativeFlags),
        .target(name: "Preprocessing", dependencies: ["MicrographIO", "CFFTW"], swiftSettings: kernelFlags),
        .target(name: "Segmentation", dependencies: ["NanoNet", "NanoTensor", "Preprocessing", "MicrographIO", "ParticleAnalysis"], swiftSettings: nativeFlags),
        .target(name: "ParticleAnalysis", dependencies: ["CNanoSupport", "Preprocessing"], swiftSettings: kernelFlags),
        .target(name: "Simulation", dependencies: ["Preprocessing", "MicrographIO"], swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        .target(name: "Training", dependencies: ["Segmentation", "ParticleAnalysis", "NanoNet", "NanoTensor", "Preprocessing", "MicrographIO"]),
        // Fuzzing: the readers and model parsers as libFuzzer targets (`make fuzz`; see FuzzTarget).
        .target(name: "FuzzTargets", dependencies: ["MicrographIO", "NanoNet"]),
        .executableTarget(name: "nanofind-fuzz", dependencies: ["FuzzTargets"]),
        .executableTarget(name: "nanofind", dependencies: [
            "NanoTensor", "NanoNet", "MicrographIO", "Preprocessing", "Segmentation", "ParticleAnalysis", "Training", "Simulation",
            "CNanoSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Helpers the test targets share (NaN-proof comparisons); nothing in Sources imports it.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "NanoTensorTests", dependencies: ["NanoTensor", "TestSupport"]),
        .testTarget(name: "NanoNetTests", dependencies: ["NanoNet", "NanoTensor", "MicrographIO", "TestSupport"]),
        .testTarget(name: "MicrographIOTests", dependencies: ["MicrographIO", "NanoTensor"]),
        .testTarget(name: "PreprocessingTests", dependencies: ["Preprocessing", "MicrographIO"]),
        .testTarget(name: "SegmentationTests", dependencies: ["Segmentation", "ParticleAnalysis", "NanoNet", "NanoTensor", "Preprocessing",
                                                              "MicrographIO", "TestSupport"]),
        .testTarget(name: "SimulationTests", dependencies: ["Simulation", "Preprocessing", "MicrographIO", "Segmentation", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Segmentation", "NanoNet", "Preprocessing", "MicrographIO"]),
        .testTarget(name: "CLITests", dependencies: ["MicrographIO", "NanoNet", "Preprocessing", "Segmentation", "ParticleAnalysis", "Training", "TestSupport"]),
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets", "MicrographIO", "NanoNet", "NanoTensor", "TestSupport"]),
    ]
)
