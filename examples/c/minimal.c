/* minimal.c: the README's "From C" program: the labels of the first ten digits of an MNIST
 * IDX image file.   usage: minimal MODEL.lenet t10k-images-idx3-ubyte */
#include <stdio.h>
#include "lenet_native.h"

int main(int argc, char **argv)
{
    unsigned char digits[10][28 * 28];              /* 0 = background, 255 = ink */
    int32_t labels[10];
    lenet_model *model;
    FILE *f = argc == 3 ? fopen(argv[2], "rb") : NULL;
    if (!f || fseek(f, 16, SEEK_SET) || fread(digits, 1, sizeof digits, f) != sizeof digits) return 2;
    fclose(f);
    int st = lenet_model_load(&model, argv[1]);
    if (st == LENET_OK) st = lenet_model_labels_u8(model, labels, &digits[0][0], 10, 1);
    if (st != LENET_OK) { fprintf(stderr, "%s\n", lenet_strerror(st)); return 1; }
    for (int i = 0; i < 10; i++) printf("%d\n", (int)labels[i]);
    lenet_model_free(model);
}
