import Foundation
import MicrographIO
import XCTest

final class EMDReaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-emd-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["emd-velox", "emd-berkeley"], read: EMDReader.read)
    }

    func testIsHDF5() {
        let sig: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        XCTAssertTrue(EMDReader.isHDF5(sig + [0, 0]))
        XCTAssertTrue(EMDReader.isHDF5([UInt8](repeating: 0, count: 512) + sig))
        XCTAssertTrue(EMDReader.isHDF5([UInt8](repeating: 0, count: 2048) + sig))
        XCTAssertFalse(EMDReader.isHDF5([UInt8](repeating: 0, count: 100) + sig))
        XCTAssertFalse(EMDReader.isHDF5(Array(sig.prefix(7))))
    }

    /// Velox stores (height, width, frames); the reader returns frames × height × width.
    func testVeloxRoundTrip() throws {
        for (type, frames) in [(PixelType.int16, 3), (.uint16, 1), (.float32, 2), (.uint8, 1)] {
            let pixels = DMTestImage.make(type, dims: [5, 4, frames]).expected
            let url = dir.appendingPathComponent("velox-\(type)-\(frames).emd")
            try EMDTestWriter.velox(url, type: type, width: 5, height: 4, frames: frames, pixels: pixels)
            XCTAssertTrue(EMDReader.isHDF5(try readFileBytes(url)))
            let m = try XCTUnwrap(EMDReader.read(url).first)
            XCTAssertEqual(m.format, "emd-velox")
            XCTAssertEqual([m.width, m.height, m.frames], [5, 4, frames])
            XCTAssertEqual(m.pixelType, type)
            XCTAssertEqual(m.data, pixels, "\(type) × \(frames)")
            XCTAssertEqual(m.pixelSize?.x ?? 0, 0.2, accuracy: 1e-12)
            XCTAssertEqual(m.pixelSize?.y ?? 0, 0.3, accuracy: 1e-12)
            XCTAssertEqual(m.storedCalibration?.unitX, "m")
            XCTAssertEqual(m.metadata.voltageKV, 300)
            XCTAssertEqual(m.metadata.magnification, 1_250_000)
            XCTAssertEqual(m.metadata.acquisitionDate, "2020-07-29T16:48:19+00:00")
            XCTAssertEqual(m.metadata.detector, "HAADF")
            XCTAssertEqual(m.metadata.microscope, "Titan")
        }
    }

    /// Berkeley data is read as stored; leading axes are frames; pixel size from the dim vectors.
    func testBerkeleyRoundTrip() throws {
        let pixels = DMTestImage.make(.uint16, dims: [6, 4, 2]).expected
        let url = dir.appendingPathComponent("berkeley.emd")
        try EMDTestWriter.berkeley(url, type: .uint16, shape: [2, 4, 6], pixels: pixels, step: 0.5, units: "n_m")
        let m = try XCTUnwrap(EMDReader.read(url).first)
        XCTAssertEqual(m.format, "emd-berkeley")
        XCTAssertEqual([m.width, m.height, m.frames], [6, 4, 2])
        XCTAssertEqual(m.data, pixels)
        XCTAssertEqual(m.pixelSize?.x ?? 0, 0.5, accuracy: 1e-7)
        XCTAssertEqual(m.storedCalibration?.unitY, "n_m")
        XCTAssertEqual(m.metadata.voltageKV, 200)
        XCTAssertEqual(m.metadata.extra["title"], "sample")

        // ncempy (and the EMD viewers) write the units bracketed: "[n_m]", "[u_m]".
        for (units, nm) in [("[n_m]", 0.5), ("[u_m]", 500.0), (" [A] ", 0.05)] {
            let ncem = dir.appendingPathComponent("berkeley-ncempy.emd")
            try EMDTestWriter.berkeley(ncem, type: .uint16, shape: [4, 6], pixels: DMTestImage.make(.uint16, dims: [6, 4]).expected,
                                       step: 0.5, units: units)
            XCTAssertEqual(try XCTUnwrap(EMDReader.read(ncem).first?.pixelSize?.x, units), nm, accuracy: nm * 1e-6, units)
        }
        XCTAssertNil(LengthUnit.nanometres(per: "[deg]"))
        XCTAssertNil(LengthUnit.nanometres(per: "[1/n_m]"))
        XCTAssertEqual(LengthUnit.nanometres(per: "nanometers"), 1)
        XCTAssertEqual(LengthUnit.nanometres(per: "micrometres"), 1000)

        let uncalibrated = dir.appendingPathComponent("berkeley-nounits.emd")
        try EMDTestWriter.berkeley(uncalibrated, type: .int32, shape: [3, 3],
                                   pixels: DMTestImage.make(.int32, dims: [3, 3]).expected, step: 1, units: "[]")
        let u = try XCTUnwrap(EMDReader.read(uncalibrated).first)
        XCTAssertNil(u.pixelSize)
        XCTAssertNil(u.storedCalibration)
    }

    func testErrorsNameTheFile() throws {
        let notHDF5 = dir.appendingPathComponent("plain.emd")
        try Data("not an HDF5 file".utf8).write(to: notHDF5)
        XCTAssertThrowsError(try EMDReader.read(notHDF5)) { error in
            XCTAssertEqual((error as? MicrographError)?.file, notHDF5.path)
        }
        let url = dir.appendingPathComponent("velox.emd")
        try EMDTestWriter.velox(url, type: .int16, width: 4, height: 4, frames: 1,
                                pixels: DMTestImage.make(.int16, dims: [4, 4]).expected)
        let bytes = try readFileBytes(url)
        let truncated = dir.appendingPathComponent("truncated.emd")
        try Data(bytes.prefix(bytes.count / 2)).write(to: truncated)
        XCTAssertThrowsError(try EMDReader.read(truncated)) { error in
            XCTAssertEqual((error as? MicrographError)?.file, truncated.path, "\(error)")
        }
    }

    /// A zero-size object in a global heap collection (where variable-length strings live)
    /// makes libhdf5 1.10 loop forever; the reader must refuse the file instead.
    func testCorruptGlobalHeapIsRefused() throws {
        let url = dir.appendingPathComponent("berkeley.emd")
        try EMDTestWriter.berkeley(url, type: .uint8, shape: [2, 2], pixels: [1, 2, 3, 4], step: 1, units: "nm")
        var bytes = try readFileBytes(url)
        let gcol = Array("GCOL".utf8)
        let at = try XCTUnwrap((0..<(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == gcol })
        // First object: index 0 (free space) with size 0.
        for k in 0..<16 { bytes[at + 16 + k] = 0 }
        let bad = dir.appendingPathComponent("bad-heap.emd")
        try Data(bytes).write(to: bad)
        let start = Date()
        XCTAssertThrowsError(try EMDReader.read(bad)) { error in
            XCTAssertTrue("\(error)".contains("global heap"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }

    func emdSeeds() throws -> [DMSEREMDFuzz.Seed] {
        var seeds: [DMSEREMDFuzz.Seed] = []
        let velox = dir.appendingPathComponent("seed-velox.emd")
        try EMDTestWriter.velox(velox, type: .int16, width: 6, height: 5, frames: 2,
                                pixels: DMTestImage.make(.int16, dims: [6, 5, 2]).expected)
        seeds.append(DMSEREMDFuzz.Seed(name: "generated-velox.emd", bytes: try readFileBytes(velox)))
        let berkeley = dir.appendingPathComponent("seed-berkeley.emd")
        try EMDTestWriter.berkeley(berkeley, type: .float32, shape: [2, 5, 6],
                                   pixels: DMTestImage.make(.float32, dims: [6, 5, 2]).expected, step: 0.1, units: "nm")
        seeds.append(DMSEREMDFuzz.Seed(name: "generated-berkeley.emd", bytes: try readFileBytes(berkeley)))
        seeds += DMSEREMDFuzz.corpusSeeds(folder: "emd", extensions: ["emd"], maxBytes: 200_000)
        return seeds
    }

    func testFuzzEMD() throws {
        // 2,000 mutants with this seed. Other seeds can crash libhdf5 1.10 itself (inside the C
        // library, which no Swift code can catch); the CLI reads HDF5 files in a child process.
        let seeds = try emdSeeds()
        let path = dir.appendingPathComponent("mutant.emd")
        DMSEREMDFuzz.run("EMD", seeds: seeds, count: 2_000, rngSeed: 0xE3D, parse: { bytes in
            try Data(bytes).write(to: path)
            return try EMDReader.read(path)
        })
    }

    /// EMD seeds as `make fuzz`'s corpus (see FuzzSeedCorpus).
    func testWriteFuzzSeeds() throws {
        _ = try FuzzSeedCorpus.folder("emd")
        try FuzzSeedCorpus.write(try emdSeeds().map(\.bytes), target: "emd", ext: "emd")
    }
}
