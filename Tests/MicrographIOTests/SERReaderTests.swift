import Foundation
import MicrographIO
import XCTest

final class SERReaderTests: XCTestCase {
    let url = URL(fileURLWithPath: "/tmp/generated_1.ser")

    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["ser"], read: SERReader.read)
    }

    /// Every TIA data type, both header versions, single images and series: pixels come back top row first.
    func testGeneratedFilesRoundTrip() throws {
        let types: [PixelType] = [.uint8, .uint16, .uint32, .int8, .int16, .int32, .float32, .float64, .complex64, .complex128]
        for version: UInt16 in [0x0210, 0x0220] {
            for type in types {
                for count in [1, 3] {
                    let what = "SER 0x\(String(version, radix: 16)) \(type) ×\(count)"
                    let frames = SERTestWriter.frames(type, width: 5, height: 4, count: count)
                    let out = SERTestWriter.write(version: version, code: SERTestWriter.code(type), type: type,
                                                  width: 5, height: 4, frames: frames, delta: (2e-10, 3e-10))
                    XCTAssertTrue(SERReader.isSER(out.bytes), what)
                    let m = try SERReader.parse(out.bytes, url: url)
                    XCTAssertEqual(m.format, "ser", what)
                    XCTAssertEqual([m.width, m.height, m.frames], [5, 4, count], what)
                    XCTAssertEqual(m.pixelType, type, what)
                    XCTAssertEqual(m.data, frames.flatMap { $0 }, what)
                    XCTAssertEqual(m.pixelSize?.x ?? 0, 0.2, accuracy: 1e-12, what)
                    XCTAssertEqual(m.pixelSize?.y ?? 0, 0.3, accuracy: 1e-12, what)
                    XCTAssertEqual(m.storedCalibration?.unitX, "m", what)
                }
            }
        }
    }

    /// RosettaSciIO's unit rule: STEM is reciprocal only with a camera; otherwise Diffraction is reciprocal.
    func testEMIUnitRule() throws {
        let out = SERTestWriter.write(code: 2, type: .uint16, width: 2, height: 2,
                                      frames: SERTestWriter.frames(.uint16, width: 2, height: 2, count: 1), delta: (1e-9, 1e-9))
        let cases: [(String, String?, Bool)] = [
            ("STEM nP Mh Zoom Diffraction", nil, false),
            ("STEM nP Mh Zoom Diffraction", "BM-Ceta", true),
            ("TEM uP SA Zoom Diffraction", "BM-Ceta", true),
            ("TEM uP SA Zoom Diffraction", nil, true),
            ("TEM uP SA Zoom Image", "WA-Orius", false),
        ]
        for (mode, camera, reciprocal) in cases {
            let emi = try XCTUnwrap(EMIInfo.parse(SERTestWriter.emi(mode: mode, camera: camera)))
            XCTAssertEqual(emi.isReciprocal, reciprocal, "\(mode) camera \(camera ?? "none")")
            let m = try SERReader.parse(out.bytes, url: url, emi: emi)
            XCTAssertEqual(m.pixelSize == nil, reciprocal, mode)
            XCTAssertEqual(m.storedCalibration?.unitX, reciprocal ? "1/m" : "m", mode)
            XCTAssertEqual(m.metadata.mode, mode)
            XCTAssertEqual(m.metadata.detector, camera)
            XCTAssertEqual(m.metadata.voltageKV, 200)
            XCTAssertEqual(m.metadata.magnification, 19500)
            XCTAssertEqual(m.metadata.acquisitionDate, "Sun Feb 21 17:50:18 2016")
        }
        XCTAssertNil(EMIInfo.parse(Array("no object info here".utf8)))
    }

    /// `read` finds `<stem>.emi` beside `<stem>_1.ser` on disk.
    func testReadUsesCompanionEMI() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-ser-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ser = dir.appendingPathComponent("scan_1.ser")
        XCTAssertEqual(SERReader.companionEMI(for: ser)?.lastPathComponent, "scan.emi")
        XCTAssertNil(SERReader.companionEMI(for: dir.appendingPathComponent("scan.ser")))
        let out = SERTestWriter.write(code: 6, type: .int32, width: 3, height: 2,
                                      frames: SERTestWriter.frames(.int32, width: 3, height: 2, count: 2), delta: (5e-9, 5e-9))
        try Data(out.bytes).write(to: ser)
        let without = try SERReader.read(ser)
        XCTAssertEqual(without.first?.storedCalibration?.unitX, "m")
        XCTAssertNil(without.first?.metadata.voltageKV)
        try Data(SERTestWriter.emi(mode: "TEM uP SA Zoom Diffraction", camera: "BM-Ceta", magnification: nil))
            .write(to: dir.appendingPathComponent("scan.emi"))
        let with = try XCTUnwrap(SERReader.read(ser).first)
        XCTAssertNil(with.pixelSize)
        XCTAssertEqual(with.storedCalibration?.unitX, "1/m")
        XCTAssertEqual(with.metadata.detector, "BM-Ceta")
        XCTAssertNil(with.metadata.magnification)
        XCTAssertEqual(with.frames, 2)
    }

    func testSpectraAndBadHeadersAreRefused() throws {
        let frames = SERTestWriter.frames(.float32, width: 4, height: 1, count: 1)
        let spectrum = SERTestWriter.write(dataTypeID: 0x4120, code: 7, type: .float32, width: 4, height: 1,
                                           frames: frames, delta: (1, 1))
        XCTAssertThrowsError(try SERReader.parse(spectrum.bytes, url: url)) { error in
            XCTAssertEqual((error as? MicrographError)?.file, url.path)
            XCTAssertTrue("\(error)".contains("1-D spectra are not images"), "\(error)")
        }
        let good = SERTestWriter.write(code: 7, type: .float32, width: 4, height: 1, frames: frames, delta: (1, 1))
        var badVersion = good.bytes; badVersion[4] = 0x30
        XCTAssertThrowsError(try SERReader.parse(badVersion, url: url)) { error in
            XCTAssertTrue("\(error)".contains("SeriesVersion"), "\(error)")
        }
        XCTAssertThrowsError(try SERReader.parse(Array(good.bytes.prefix(good.bytes.count - 20)), url: url)) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        XCTAssertFalse(SERReader.isSER([0x49, 0x49, 0x97]))
    }

    /// Every element pointing at the same bytes (or at the header) cannot multiply the output:
    /// the series must fit in the file.
    func testSelfReferencingOffsetsCannotInflateOutput() throws {
        let type = PixelType.uint16
        let frames = SERTestWriter.frames(type, width: 8, height: 8, count: 4)
        let out = SERTestWriter.write(version: 0x0220, code: 2, type: type, width: 8, height: 8, frames: frames, delta: (1e-9, 1e-9))
        var b = out.bytes
        // A new offset array at the end: 1000 valid elements, all pointing at element 0.
        let arrayStart = Int(out.offsets[1])
        var grown = b
        for _ in 0..<1000 { withUnsafeBytes(of: out.offsets[2].littleEndian) { grown += $0 } }
        withUnsafeBytes(of: UInt32(1000).littleEndian) { p in grown.replaceSubrange(14..<18, with: p); grown.replaceSubrange(18..<22, with: p) }
        withUnsafeBytes(of: UInt64(b.count).littleEndian) { p in grown.replaceSubrange(22..<30, with: p) }
        XCTAssertThrowsError(try SERReader.parse(grown, url: url)) { error in
            XCTAssertTrue("\(error)".contains("need more bytes than the file has"), "\(error)")
        }
        // An offset pointing back into the header is read as an element and must fail cleanly or fit.
        b = out.bytes
        DMSEREMDFuzz.write(0, into: &b, FuzzField(offset: arrayStart, size: 8, bigEndian: false))
        do { let m = try SERReader.parse(b, url: url); XCTAssertLessThanOrEqual(m.data.count, b.count) } catch is MicrographError {}
    }

    func serSeeds() -> [DMSEREMDFuzz.Seed] {
        var seeds: [DMSEREMDFuzz.Seed] = []
        let configs: [(UInt16, PixelType, Int)] = [(0x0210, .uint16, 1), (0x0220, .int32, 3), (0x0210, .float32, 2), (0x0220, .complex64, 1)]
        for (k, (version, type, count)) in configs.enumerated() {
            let out = SERTestWriter.write(version: version, code: SERTestWriter.code(type), type: type, width: 6, height: 5,
                                          frames: SERTestWriter.frames(type, width: 6, height: 5, count: count), delta: (1e-10, 1e-10))
            seeds.append(DMSEREMDFuzz.Seed(name: "generated-\(k)_1.ser", bytes: out.bytes, fields: out.fields,
                                           interesting: out.offsets + [22, 26, 30]))
        }
        return seeds
    }

    func testFuzzSER() {
        let parse: ([UInt8]) throws -> [Micrograph] = { [try SERReader.parse($0, url: self.url)] }
        DMSEREMDFuzz.run("SER generated", seeds: serSeeds(), count: 2_000, rngSeed: 0x5E5, parse: parse)
        let corpus = DMSEREMDFuzz.corpusSeeds(folder: "ser", extensions: ["ser"], maxBytes: 400_000)
        if !corpus.isEmpty {
            DMSEREMDFuzz.run("SER corpus", seeds: corpus, count: 1_000, rngSeed: 0xC0DE, parse: parse)
        }
    }

    /// SER seeds, and .emi companions, as `make fuzz`'s corpus (see FuzzSeedCorpus).
    func testWriteFuzzSeeds() throws {
        try FuzzSeedCorpus.write(serSeeds().map(\.bytes), target: "ser", ext: "ser")
        try FuzzSeedCorpus.write([SERTestWriter.emi(mode: "TEM", camera: "BM-Ceta"), SERTestWriter.emi(mode: "STEM", camera: nil)],
                                 target: "emi", ext: "emi")
    }
}
