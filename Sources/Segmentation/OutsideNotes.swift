/// The notes `segment` and `bragg` give about pixels that show no specimen, worded once:
/// `object` is what such pixels never are ("particle", "crystal"), `action` what was not done
/// ("segment", "filter").
enum OutsideNotes {
    static func nonFinite(_ count: Int, never object: String) -> String {
        "\(count) pixels are NaN or infinite: filled with pixels drawn from the others, never \(object)"
    }
    static func padding(_ count: Int, never object: String) -> String {
        "\(count) pixels are flat padding at the image's edges (one value, reaching the edges across and down): filled with pixels drawn from the others, never \(object)"
    }
    static func allNonFinite(nothingTo action: String, no objects: String) -> String {
        "every pixel is NaN or infinite: nothing to \(action), no \(objects)"
    }
    static func allPadding(nothingTo action: String, no objects: String) -> String {
        "every pixel lies in flat blocks of one value (padding): nothing to \(action), no \(objects)"
    }
    static func allOutside(nothingTo action: String, no objects: String) -> String {
        "every pixel is NaN, infinite or flat padding: nothing to \(action), no \(objects)"
    }
    static func oneValue(_ value: Float, nothingTo action: String, no objects: String) -> String {
        String(format: "every pixel is %g: nothing to %@, no %@", value, action, objects)
    }
}
