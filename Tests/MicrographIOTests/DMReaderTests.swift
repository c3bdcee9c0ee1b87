import Foundation
import MicrographIO
import XCTest

final class DMReaderTests: XCTestCase {
    let url = URL(fileURLWithPath: "/tmp/generated.dm")

    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["dm3", "dm4"], read: DMReader.read)
    }

    /// Every DM data type, both versions, both byte orders: the reader returns exactly what was written.
    func testGeneratedFilesRoundTrip() throws {
        let types: [PixelType] = [.int8, .uint8, .int16, .uint16, .int32, .uint32, .float32, .float64,
                                  .complex64, .complex128, .bool]
        var checked = 0
        for version in [3, 4] {
            for littleEndian in [true, false] {
                var images = types.map { DMTestImage.make($0, dims: [7, 5]) }
                images.append(DMTestImage.make(.int16, dims: [6, 4, 3]))
                images.append(DMTestImage.make(.uint16, dims: [3, 2, 2, 2]))
                images.append(DMTestImage.rgb(width: 5, height: 3))
                for image in images {
                    let what = "DM\(version) \(littleEndian ? "LE" : "BE") \(image.type) \(image.dims)"
                    let (bytes, _) = DMTestWriter.dmFile(version: version, littleEndian: littleEndian, image: image,
                                                         scale: (0.25, 2.5), units: ("nm", "Å"), withPlot: true)
                    XCTAssertTrue(DMReader.isDM(bytes), what)
                    let result = try DMReader.parse(bytes, url: url)
                    XCTAssertEqual(result.count, 1, "\(what): thumbnail and 1-D plot must be skipped")
                    guard let m = result.first else { continue }
                    XCTAssertEqual(m.format, version == 4 ? "dm4" : "dm3", what)
                    XCTAssertEqual(m.width, image.dims[0], what)
                    XCTAssertEqual(m.height, image.dims[1], what)
                    XCTAssertEqual(m.frames, image.dims.dropFirst(2).reduce(1, *), what)
                    XCTAssertEqual(m.channels, image.channels, what)
                    XCTAssertEqual(m.pixelType, image.type, what)
                    XCTAssertEqual(m.data, image.expected, what)
                    XCTAssertEqual(m.pixelSize?.x ?? 0, 0.25, accuracy: 1e-12, what)
                    XCTAssertEqual(m.pixelSize?.y ?? 0, 0.25, accuracy: 1e-12, what)
                    XCTAssertEqual(m.storedCalibration, StoredCalibration(x: 0.25, y: 2.5, unitX: "nm", unitY: "Å"), what)
                    XCTAssertEqual(m.metadata.voltageKV, 300, what)
                    XCTAssertEqual(m.metadata.magnification, 250_000, what)
                    XCTAssertEqual(m.metadata.detector, "TestCam", what)
                    XCTAssertEqual(m.metadata.microscope, "Test Microscope", what)
                    XCTAssertEqual(m.metadata.acquisitionDate, "8/8/2016 4:26:37 PM", what)
                    XCTAssertEqual(m.metadata.extra["title"], "generated", what)
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 2 * 2 * 14)
    }

    func testCalibrationUnits() throws {
        let image = DMTestImage.make(.uint16, dims: [4, 4])
        func read(_ scale: (Double, Double), _ units: (String, String)) throws -> Micrograph {
            let (bytes, _) = DMTestWriter.dmFile(version: 3, littleEndian: true, image: image, scale: scale, units: units)
            return try XCTUnwrap(DMReader.parse(bytes, url: url).first)
        }
        let um = try read((0.5, 0.5), ("µm", "µm"))
        XCTAssertEqual(um.pixelSize?.x ?? 0, 500, accuracy: 1e-9)
        let pm = try read((2, 3), ("pm", "nm"))
        XCTAssertEqual(pm.pixelSize?.x ?? 0, 0.002, accuracy: 1e-12)
        XCTAssertEqual(pm.pixelSize?.y ?? 0, 3, accuracy: 1e-12)
        let reciprocal = try read((0.17, 0.17), ("1/nm", "1/nm"))
        XCTAssertNil(reciprocal.pixelSize, "a reciprocal calibration is not a pixel size")
        XCTAssertEqual(reciprocal.storedCalibration?.unitX, "1/nm")
        let none = try read((1, 1), ("", ""))
        XCTAssertNil(none.pixelSize)
        XCTAssertNil(none.storedCalibration)
    }

    func testIsDM() throws {
        let (bytes, _) = DMTestWriter.dmFile(version: 4, littleEndian: true, image: DMTestImage.make(.int8, dims: [2, 2]),
                                             scale: (1, 1), units: ("nm", "nm"))
        XCTAssertTrue(DMReader.isDM(bytes))
        XCTAssertFalse(DMReader.isDM([]))
        XCTAssertFalse(DMReader.isDM([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]))
        XCTAssertFalse(DMReader.isDM(Array("\u{93}NUMPY....".utf8)))
    }

    func testErrorsNameTheFileAndField() throws {
        let (bytes, _) = DMTestWriter.dmFile(version: 3, littleEndian: true, image: DMTestImage.make(.float32, dims: [8, 8]),
                                             scale: (1, 1), units: ("nm", "nm"))
        XCTAssertThrowsError(try DMReader.parse(Array(bytes[0..<(bytes.count / 2)]), url: url)) { error in
            guard let e = error as? MicrographError else { return XCTFail("not a MicrographError: \(error)") }
            XCTAssertEqual(e.file, url.path)
            XCTAssertTrue(e.reason.contains("truncated") || e.reason.contains("more than"), e.reason)
        }
        XCTAssertThrowsError(try DMReader.parse([0, 0, 0, 7] + bytes.dropFirst(4), url: url)) { error in
            XCTAssertTrue("\(error)".contains("header version 7"), "\(error)")
        }
        XCTAssertThrowsError(try DMReader.read(URL(fileURLWithPath: "/nonexistent/file.dm3"))) { error in
            XCTAssertTrue(error is MicrographError)
        }
    }

    /// Groups nested 70 deep must be refused (limit 64) rather than recursing without bound.
    func testDeepNestingIsRefused() throws {
        var tag = DMTestWriter.Tag.number("leaf", type: 3, value: 1)
        for _ in 0..<70 { tag = .group("g", [tag]) }
        var w = DMTestWriter(version: 3, littleEndian: true)
        let bytes = w.file([tag])
        XCTAssertThrowsError(try DMReader.parse(bytes, url: url)) { error in
            XCTAssertTrue("\(error)".contains("deeper than 64"), "\(error)")
        }
    }

    /// Huge values in any structural field (counts, sizes, info entries) either fail cleanly or
    /// are fields the reader ignores (struct field-name lengths), leaving the image unchanged.
    func testHugeCountsAreRefused() throws {
        let (bytes, fields) = DMTestWriter.dmFile(version: 4, littleEndian: true, image: DMTestImage.make(.uint8, dims: [4, 4]),
                                                  scale: (1, 1), units: ("nm", "nm"))
        let original = try XCTUnwrap(DMReader.parse(bytes, url: url).first)
        var refused = 0
        for f in fields where f.size == 8 && f.bigEndian {
            var b = bytes
            DMSEREMDFuzz.write(UInt64.max >> 1, into: &b, f)
            do {
                let images = try DMReader.parse(b, url: url)
                XCTAssertEqual(images.first?.data, original.data, "field at \(f.offset) changed the image")
            } catch is MicrographError {
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, fields.count / 3)
    }

    func dmSeeds(version: Int) -> [DMSEREMDFuzz.Seed] {
        var seeds: [DMSEREMDFuzz.Seed] = []
        let images: [DMTestImage] = [DMTestImage.make(.uint16, dims: [6, 5]), DMTestImage.make(.complex64, dims: [3, 3]),
                                     DMTestImage.make(.int16, dims: [4, 3, 2]), DMTestImage.rgb(width: 3, height: 2)]
        for (k, image) in images.enumerated() {
            let (bytes, fields) = DMTestWriter.dmFile(version: version, littleEndian: k % 2 == 0, image: image,
                                                      scale: (0.1, 0.1), units: ("nm", "nm"), withPlot: k == 0)
            seeds.append(DMSEREMDFuzz.Seed(name: "generated-\(k).dm\(version)", bytes: bytes, fields: fields,
                                           interesting: [UInt64(bytes.count), 64, 1 << 32]))
        }
        return seeds
    }

    func fuzz(version: Int) {
        let generated = dmSeeds(version: version)
        let parse: ([UInt8]) throws -> [Micrograph] = { try DMReader.parse($0, url: self.url) }
        DMSEREMDFuzz.run("DM\(version) generated", seeds: generated, count: 2_000, rngSeed: UInt64(version) * 1_000_003,
                         parse: parse)
        let corpus = DMSEREMDFuzz.corpusSeeds(folder: "dm", extensions: ["dm\(version)"], maxBytes: 100_000)
        if !corpus.isEmpty {
            DMSEREMDFuzz.run("DM\(version) corpus", seeds: corpus, count: 1_000, rngSeed: UInt64(version) * 7_777,
                             parse: parse)
        }
    }

    func testFuzzDM3() { fuzz(version: 3) }
    func testFuzzDM4() { fuzz(version: 4) }

    /// DM3 and DM4 seeds as `make fuzz`'s corpus (see FuzzSeedCorpus).
    func testWriteFuzzSeeds() throws {
        try FuzzSeedCorpus.write((dmSeeds(version: 3) + dmSeeds(version: 4)).map(\.bytes), target: "dm", ext: "dm")
    }

    /// Which ImageList entries are micrographs: the root's Thumbnails group names the thumbnails
    /// (without it, the first of several entries is one); spectra and spectrum images (EELS,
    /// EDS: ImageTags Meta Data Format) are not micrographs.
    func testThumbnailsAndSpectraFollowTheirTags() throws {
        typealias T = DMTestWriter.Tag
        func entry(_ name: String, format: String? = nil) -> T {
            let image = DMTestImage.make(.int16, dims: [6, 4])
            var tags: [T] = [.text("Name", name)]
            if let format { tags.append(.group("ImageTags", [.group("Meta Data", [.text("Format", format)])])) }
            return .group("", [.group("ImageData", [image.dataTag(littleEndian: true), .number("DataType", type: 3, value: Double(image.dataType)),
                                                    .group("Dimensions", [.number("", type: 5, value: 6), .number("", type: 5, value: 4)]),
                                                    .number("PixelDepth", type: 3, value: 2)])] + tags)
        }
        func read(_ entries: [T], thumbnails: [Int]?) throws -> [String] {
            var w = DMTestWriter(version: 3, littleEndian: true)
            var root: [T] = [.group("ImageList", entries)]
            if let thumbnails { root.append(.group("Thumbnails", thumbnails.map { .group("", [.number("ImageIndex", type: 3, value: Double($0))]) })) }
            return try DMReader.parse(w.file(root), url: URL(fileURLWithPath: "/tmp/t.dm3")).map { $0.metadata.extra["title"] ?? "?" }
        }
        XCTAssertEqual(try read([entry("first"), entry("second")], thumbnails: []), ["first", "second"])
        XCTAssertEqual(try read([entry("thumb"), entry("main")], thumbnails: [0]), ["main"])
        XCTAssertEqual(try read([entry("thumb"), entry("main")], thumbnails: nil), ["main"])
        XCTAssertEqual(try read([entry("image"), entry("si", format: "Spectrum image")], thumbnails: []), ["image"])
        XCTAssertThrowsError(try read([entry("si", format: "Spectrum image")], thumbnails: [])) { e in
            XCTAssertTrue("\(e)".contains("spectrum image"), "\(e)")
        }
    }
}
