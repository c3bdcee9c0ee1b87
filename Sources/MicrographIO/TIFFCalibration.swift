import Foundation

/// Where a TIFF's pixel size comes from, checked in this order: FEI/Thermo INI text (tags
/// 34682/34680), Zeiss CZ_SEM (34118), DigitalMicrograph private tags (65009/65010 scale,
/// 65003/65004 unit), ImageJ (ImageDescription `unit=` with 1/XResolution, 1/YResolution).
/// Anything else (DPI-style resolutions included) is uncalibrated. Also collects the
/// acquisition metadata those blocks carry.
struct TIFFCalibration {
    var pixelSize: PixelSize?
    var stored: StoredCalibration?

    static let feiHelios: UInt16 = 34682, feiSFEG: UInt16 = 34680, zeissSEM: UInt16 = 34118
    static let dmUnitX: UInt16 = 65003, dmUnitY: UInt16 = 65004, dmScaleX: UInt16 = 65009, dmScaleY: UInt16 = 65010

    static func find(_ dir: TIFFDirectory, width: Int, height: Int,
                     metadata: inout MicrographMetadata) -> TIFFCalibration {
        if let ini = dir.text(feiHelios) ?? dir.text(feiSFEG), let c = fei(ini, height: height, metadata: &metadata) {
            metadata.extra["calibration_source"] = "FEI [Scan] PixelWidth/PixelHeight"
            return c
        }
        if let raw = dir.rawBytes(zeissSEM), let c = zeiss(raw, width: width, metadata: &metadata) {
            metadata.extra["calibration_source"] = "Zeiss CZ_SEM"
            return c
        }
        if let c = digitalMicrograph(dir) {
            metadata.extra["calibration_source"] = "DigitalMicrograph tags 65009/65010, 65003/65004"
            return c
        }
        if let description = dir.text(270), description.hasPrefix("ImageJ="), let c = imageJ(description, dir) {
            metadata.extra["calibration_source"] = "ImageJ unit= and 1/XResolution, 1/YResolution"
            return c
        }
        return TIFFCalibration()
    }

    static func calibration(x: Double, y: Double, unitX: String, unitY: String) -> TIFFCalibration? {
        guard x.isFinite, y.isFinite, x > 0, y > 0 else { return nil }
        let stored = StoredCalibration(x: x, y: y, unitX: unitX, unitY: unitY)
        guard let fx = nanometresPerUnit(unitX), let fy = nanometresPerUnit(unitY) else {
            return TIFFCalibration(pixelSize: nil, stored: stored)
        }
        return TIFFCalibration(pixelSize: PixelSize(x: x * fx, y: y * fy), stored: stored)
    }

    // MARK: FEI / Thermo

    /// Parses INI text into [section: [key: value]].
    static func ini(_ text: String) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var section = ""
        for rawLine in text.split(omittingEmptySubsequences: true, whereSeparator: { $0.isNewline }) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
            } else if let eq = line.firstIndex(of: "=") {
                out[section, default: [:]][String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
        }
        return out
    }

    static func fei(_ text: String, height: Int, metadata: inout MicrographMetadata) -> TIFFCalibration? {
        let s = ini(text)
        if let hv = s["Beam"]?["HV"].flatMap(Double.init), hv.isFinite, hv > 0 { metadata.voltageKV = hv / 1000 }
        if let date = s["User"]?["Date"], let time = s["User"]?["Time"] { metadata.acquisitionDate = "\(date) \(time)" }
        if let name = s["Detectors"]?["Name"] {
            metadata.detector = [name, s["Detectors"]?["Mode"] ?? ""].filter { !$0.isEmpty }.joined(separator: " ")
        }
        if let system = s["System"]?["SystemType"] { metadata.microscope = system }
        if let hfw = s["Scan"]?["HorFieldsize"] { metadata.extra["horizontal_field_width_m"] = hfw }
        if let ry = s["Image"]?["ResolutionY"].flatMap(Int.init), ry > 0, ry < height {
            metadata.extra["fei_databar_rows"] = String(height - ry)
        }
        guard let pw = s["Scan"]?["PixelWidth"].flatMap(Double.init) else { return nil }
        let ph = s["Scan"]?["PixelHeight"].flatMap(Double.init) ?? pw
        return calibration(x: pw, y: ph, unitX: "m", unitY: "m")
    }

    // MARK: Zeiss

    /// CZ_SEM: a list of values (the 4th is the pixel size in m for a 1024-px-wide frame) then
    /// `AP_NAME` / `Label = value` line pairs.
    static func zeiss(_ raw: ArraySlice<UInt8>, width: Int, metadata: inout MicrographMetadata) -> TIFFCalibration? {
        let text = String(decoding: raw.map { $0 == 0 ? 0x0A : $0 }, as: UTF8.self)
        let latin = String(bytes: raw.map { $0 == 0 ? 0x0A : $0 }, encoding: .isoLatin1) ?? text
        let lines = latin.split(omittingEmptySubsequences: true, whereSeparator: { $0.isNewline })
            .map { $0.trimmingCharacters(in: .whitespaces) }
        var fields: [String: String] = [:]
        for (k, line) in lines.enumerated() where (line.hasPrefix("AP_") || line.hasPrefix("DP_") || line.hasPrefix("SV_")) && k + 1 < lines.count {
            let next = lines[k + 1]
            if let sep = next.firstIndex(where: { $0 == "=" || $0 == ":" }) {
                fields[line] = next[next.index(after: sep)...].trimmingCharacters(in: .whitespaces)
            }
        }
        if let kv = fields["AP_ACTUALKV"], let v = leadingNumber(kv), v.isFinite { metadata.voltageKV = kv.contains("kV") ? v : v / 1000 }
        if let mag = fields["AP_MAG"] { metadata.extra["zeiss_magnification"] = mag }
        if let detector = fields["DP_DETECTOR_CHANNEL"] { metadata.detector = detector }
        if let date = fields["AP_DATE"] {
            metadata.acquisitionDate = [date, fields["AP_TIME"] ?? ""].filter { !$0.isEmpty }.joined(separator: " ")
        }
        guard width > 0 else { return nil }
        if lines.count > 3, let perFrame = Double(lines[3]), perFrame > 0, perFrame.isFinite {
            let p = perFrame * 1024 / Double(width)
            return calibration(x: p, y: p, unitX: "m", unitY: "m")
        }
        // Fallback: the field width text, e.g. "5.965 µm", over the image width.
        if let w = fields["AP_WIDTH"], let v = leadingNumber(w) {
            let unit = w.drop { !$0.isLetter && $0 != "µ" }.trimmingCharacters(in: .whitespaces)
            if let f = nanometresPerUnit(unit) {
                let p = v * f / 1e9 / Double(width)
                return calibration(x: p, y: p, unitX: "m", unitY: "m")
            }
        }
        return nil
    }

    static func leadingNumber(_ s: String) -> Double? {
        let t = s.trimmingCharacters(in: .whitespaces)
        let numberPart = t.prefix { $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" || $0 == "e" || $0 == "E" }
        return Double(numberPart)
    }

    // MARK: DigitalMicrograph

    static func digitalMicrograph(_ dir: TIFFDirectory) -> TIFFCalibration? {
        guard let sx = dir.values(dmScaleX)?.first else { return nil }
        let sy = dir.values(dmScaleY)?.first ?? sx
        let ux = dir.text(dmUnitX) ?? "", uy = dir.text(dmUnitY) ?? ux
        return calibration(x: sx, y: sy, unitX: ux, unitY: uy)
    }

    // MARK: ImageJ

    /// ImageJ writes its description as Java properties: non-ASCII characters as \uXXXX (µ as
    /// \u00B5, Å as \u00C5), which Java's Properties.load decodes.
    static func decodingJavaEscapes(_ text: String) -> String {
        guard text.contains("\\u") else { return text }
        var out = "", chars = Array(text.unicodeScalars), i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 6 <= chars.count, chars[i + 1] == "u",
               let v = UInt32(String(String.UnicodeScalarView(chars[(i + 2)..<(i + 6)])), radix: 16), let scalar = Unicode.Scalar(v) {
                out.unicodeScalars.append(scalar); i += 6
            } else {
                out.unicodeScalars.append(chars[i]); i += 1
            }
        }
        return out
    }

    static func imageJ(_ description: String, _ dir: TIFFDirectory) -> TIFFCalibration? {
        var unit: String?
        for line in description.split(whereSeparator: { $0 == "\n" }) where line.hasPrefix("unit=") {
            unit = decodingJavaEscapes(String(line.dropFirst(5)))
        }
        guard let unit, let xr = dir.rational(282), xr.numerator > 0, xr.denominator > 0 else { return nil }
        let yr = dir.rational(283).flatMap { $0.numerator > 0 && $0.denominator > 0 ? $0 : nil } ?? xr
        return calibration(x: xr.denominator / xr.numerator, y: yr.denominator / yr.numerator, unitX: unit, unitY: unit)
    }
}
